"""DICOM network throughput side by side, in one run: N small CT instances of one study sent or retrieved five
ways, each the median of --repeat runs, with the ratios that matter for ``veil serve`` and ``veil pull``.

    .venv/bin/python benchmarks/net_bench.py                        # 2,000 instances, 3 runs each
    .venv/bin/python benchmarks/net_bench.py --instances 300 --repeat 1
    .venv/bin/python benchmarks/net_bench.py --json net.json --work /tmp/nb

Rows:
  1. DCMTK ``storescu`` -> DCMTK ``storescp``: the plain-store ceiling (storescp writes into a folder).
  2. ``storescu`` -> Orthanc (Debian's): what a PACS ingests (SQLite index, storage folder).
  3. ``storescu`` -> ``veil serve`` (research recipe, 2 workers, a folder destination): the receive time
     (storescu's wall time: every instance durably spooled before its success status) and end to end (until
     the destination folder holds N instances: quiet period, de-identification and forwarding included).
  4. Orthanc holding the study C-MOVEs it to a DCMTK ``storescp``: from the request to the final response.
  5. ``veil pull`` of the same study from that Orthanc by C-MOVE into a de-identified folder (the whole
     command: start-up, retrieve, de-identify); "not available" where this veil has no ``pull``.

Ratios: veil serve receive / storescp (target >= 0.5), veil serve receive / Orthanc ingest (target > 1), veil
pull / Orthanc C-MOVE (target >= 0.8). Every server listens on 127.0.0.1 only; every process gets
TCP_NODELAY=1 (Debian's DCMTK honours it: without it Nagle and delayed ACKs cost about 40 ms a store).
Inputs are written under --work (copies of pydicom's CT_small with new UIDs, tests/support/net_study.py) and
read into the page cache before each timed run; what the servers write goes under --scratch (a new folder in
/dev/shm where present, so no row waits for a disk: fsync there costs nothing). Each run starts from an empty
receiver (a fresh storescp and folder, a cleared Orthanc, a fresh veil work folder); server start-up is not
timed, except veil pull's own. Every process started is stopped by its PID when the script ends, Ctrl-C
included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "tests" / "support"
ENV = {**os.environ, "TCP_NODELAY": "1"}
SENDER = "SENDER"  # storescu's calling AE in rows 1-3
STORESCP_AE = "STORESCP"
MOVE_SCP_AE = "MOVESCP"  # the storescp that Orthanc C-MOVEs to (row 4)
MOVE_SCU_AE = "BENCHSCU"  # the calling AE of row 4's C-MOVE request
PULL_AE = "VEILPULL"  # veil pull's calling and move-destination AE (row 5)
ORTHANC_AE = "ORTHANC"
NODE_AE = "VEIL"


# --- processes ---------------------------------------------------------------------------------------------


class Processes:
    """Every process this script starts, each with its log file; ``stop`` ends one by its PID (SIGTERM, then
    SIGKILL after ``grace`` seconds) and closes its log; ``stop_all`` ends whatever is left."""

    def __init__(self) -> None:
        self.running: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        fh = open(log, "wb")
        try:
            # A session of its own: a Ctrl-C reaches this script only, whose finally block stops the rest.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=ENV,
                start_new_session=True,
            )
        except BaseException:
            fh.close()
            raise
        self.running[process.pid] = (process, fh)
        return process

    def finish(self, process: subprocess.Popen[bytes], timeout: float, what: str) -> int:
        """Waits for a process that ends by itself (stopped by PID if it overruns ``timeout``)."""
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            raise RuntimeError(f"{what} did not finish within {timeout:.0f} s") from None
        self.stop(process)
        return int(process.returncode)

    def stop(self, process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
        terminate(process, grace)
        entry = self.running.pop(process.pid, None)
        if entry is not None:
            entry[1].close()

    def stop_all(self) -> None:
        for process, _ in list(self.running.values())[::-1]:
            self.stop(process)


def terminate(process: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM to the process's PID, SIGKILL after ``grace`` seconds; reaped either way."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except ProcessLookupError:
            process.wait()
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def find_dcmtk(name: str) -> str | None:
    """DCMTK's ``name`` from PATH: pynetdicom installs apps of the same names (storescu, storescp) into the
    virtual environment's bin, so each candidate must say it is DCMTK."""
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        candidate = os.path.join(folder or ".", name)
        if not os.access(candidate, os.X_OK) or os.path.isdir(candidate):
            continue
        try:
            done = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (done.stdout + done.stderr).lower():
            return candidate
    return None


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``, read from /proc (no connection a server would log)."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            break
        if any(f[1].endswith(suffix) and f[3] == "0A" for f in (line.split() for line in lines)):
            return True
    else:
        return False
    with socket.socket() as s:  # no /proc: a plain connection
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], bool], timeout: float, what: str, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process ended (exit {process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.02)


def count_dcm(root: Path) -> int:
    """.dcm files under ``root``, anything under a ``.veil`` folder left out (veil's audit and manifest)."""
    total = 0
    for _, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".veil"]
        total += sum(1 for n in names if n.endswith(".dcm"))
    return total


def count_files(root: Path) -> int:
    """Every file under ``root`` (storescp names its files by modality and SOP Instance UID, no suffix)."""
    return sum(len(names) for _, _, names in os.walk(root))


def warm(paths: list[Path]) -> None:
    """Reads every input once so each run reads from the page cache, not the disk."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass


def tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    seconds: list[float] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def rate(self, files: int) -> float | None:
        median = self.median
        return files / median if median else None


# --- the bench ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, files: list[Path], study: str, scratch: Path, work: Path, repeat: int,
                 recipe: str = "research") -> None:
        self.files, self.study, self.scratch, self.work, self.repeat = files, study, scratch, work, repeat
        self.recipe = recipe
        self.n = len(files)
        self.procs = Processes()
        self.orthanc: Any = None
        self.storescu = find_dcmtk("storescu")
        self.storescp = find_dcmtk("storescp")
        self.veil = [str(Path(sys.executable).parent / "veil")]
        if not os.access(self.veil[0], os.X_OK):
            self.veil = [sys.executable, "-m", "veil"]
        self.key = work / "bench.key"
        if not self.key.exists():
            from veil.keys import generate_key_file

            generate_key_file(self.key)
        self.rows: dict[str, Row] = {}
        self.timeout = 120 + self.n * 0.25  # seconds for one run of any row
        self.versions: dict[str, str] = {}
        self.sent_at = 0.0

    def row(self, key: str, label: str) -> Row:
        return self.rows.setdefault(key, Row(key, label))

    def folder(self, name: str) -> Path:
        """A new empty folder under the scratch root."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))

    # storescu / storescp

    def start_storescp(self, ae: str, out: Path) -> tuple[subprocess.Popen[bytes], int]:
        assert self.storescp is not None
        from orthanc import free_port

        port = free_port()
        command = [self.storescp, "--aetitle", ae, "--output-directory", str(out), str(port)]
        process = self.procs.start(command, out.parent / f"{out.name}.log")
        wait_for(lambda: listening(port), 30, "storescp", process)
        return process, port

    def send(self, called: str, port: int, log: Path) -> float:
        """storescu's wall time for every input to ``called`` on 127.0.0.1:``port`` (one association)."""
        assert self.storescu is not None
        warm(self.files)
        command = [
            self.storescu,
            "-aet",
            SENDER,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, self.files),
        ]
        self.sent_at = started = time.perf_counter()  # also the start of row 3's end-to-end time
        process = self.procs.start(command, log)
        code = self.procs.finish(process, self.timeout, "storescu")
        seconds = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"storescu -> {called} exit {code}: {tail(log)}")
        return seconds

    def run_storescp(self) -> None:
        row = self.row("storescp", "storescu -> storescp (plain store)")
        for _ in range(self.repeat):
            out = self.folder("storescp")
            process, port = self.start_storescp(STORESCP_AE, out)
            try:
                row.seconds.append(self.send(STORESCP_AE, port, out.parent / f"{out.name}-storescu.log"))
            finally:
                self.procs.stop(process)
            row.outputs.append(count_files(out))
            shutil.rmtree(out, ignore_errors=True)

    # Orthanc

    def start_orthanc(self) -> None:
        from orthanc import Orthanc, available

        if not available():
            raise RuntimeError("no Orthanc (apt-get install orthanc)")
        # Kept before its __init__ runs: a Ctrl-C while Orthanc starts still finds its process (close()).
        self.orthanc = Orthanc.__new__(Orthanc)
        Orthanc.__init__(self.orthanc, self.scratch / "orthanc", ORTHANC_AE)
        self.orthanc.set_modality("sender", SENDER, 104)  # DicomAlwaysAllowStore is false: a known peer
        self.orthanc.set_modality("benchscu", MOVE_SCU_AE, 104)  # row 4's calling AE
        self.versions["orthanc"] = str(self.orthanc.client.get("/system").json().get("Version", ""))

    def clear_orthanc(self) -> None:
        client = self.orthanc.client
        for patient in client.get("/patients").json():
            client.delete(f"/patients/{patient}").raise_for_status()
        if client.get("/instances").json():
            self.orthanc.clear()

    def orthanc_count(self) -> int:
        return int(self.orthanc.client.get("/statistics").json()["CountInstances"])

    def run_orthanc(self) -> None:
        row = self.row("orthanc", "storescu -> Orthanc (PACS ingest)")
        if self.orthanc is None:
            self.start_orthanc()
        for _ in range(self.repeat):
            self.clear_orthanc()
            row.seconds.append(
                self.send(ORTHANC_AE, self.orthanc.dicom_port, self.scratch / "orthanc-storescu.log")
            )
            row.outputs.append(self.orthanc_count())
        # Orthanc now holds the study for rows 4 and 5.

    # veil serve

    def run_serve(self) -> None:
        receive = self.row("serve", "storescu -> veil serve (receive, spooled)")
        end = self.row("serve_e2e", "storescu -> veil serve -> folder (end to end)")
        for _ in range(self.repeat):
            base = self.folder("serve")
            work, dest = base / "work", base / "out"
            config = {
                "ae_title": NODE_AE,
                "host": "127.0.0.1",
                "port": 0,
                "health_port": 0,
                "allow": [{"ae_title": SENDER, "host": "127.0.0.1"}],
                "work": str(work),
                "recipe": self.recipe,
                "key": str(self.key),
                "quiet_seconds": 0.3,
                "workers": 2,
                "destinations": [{"name": "out", "type": "folder", "path": str(dest)}],
            }
            (base / "node.yml").write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
            node = self.procs.start(
                [*self.veil, "serve", "--config", str(base / "node.yml")], base / "node.log"
            )
            try:
                port, health = self.wait_node(work, node, base / "node.log")
                seconds = self.send(NODE_AE, port, base / "storescu.log")
                deadline = time.monotonic() + self.timeout
                got = count_dcm(dest)
                while got < self.n:
                    if node.poll() is not None:
                        raise RuntimeError(
                            f"veil serve ended (exit {node.returncode}): {tail(base / 'node.log')}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"veil serve: {got} of {self.n} in the folder after {self.timeout:.0f} s"
                        )
                    time.sleep(0.02)
                    got = count_dcm(dest)
                total = time.perf_counter() - self.sent_at
                status = self.health(health)
            finally:
                self.procs.stop(node, grace=30)
            receive.seconds.append(seconds)
            receive.outputs.append(int(status.get("received", -1)))
            end.seconds.append(total)
            end.outputs.append(got)
            shutil.rmtree(base, ignore_errors=True)

    def wait_node(self, work: Path, node: subprocess.Popen[bytes], log: Path) -> tuple[int, int]:
        state: dict[str, Any] = {}

        def ready() -> bool:
            try:
                state.update(json.loads((work / "node.json").read_text()))
                return listening(int(state["port"])) and bool(self.health(int(state["health_port"])))
            except (OSError, ValueError, KeyError):
                return False

        try:
            wait_for(ready, 60, "veil serve", node)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {tail(log)}") from None
        return int(state["port"]), int(state["health_port"])

    @staticmethod
    def health(port: int) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return dict(json.loads(reply.read()))

    # C-MOVE

    def run_move(self) -> None:
        from pydicom.dataset import Dataset
        from pynetdicom import AE
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

        from veil.net.pynetdicom_fixes import apply

        apply()
        row = self.row("move", "Orthanc C-MOVE -> storescp")
        model = StudyRootQueryRetrieveInformationModelMove
        for _ in range(self.repeat):
            out = self.folder("move")
            process, port = self.start_storescp(MOVE_SCP_AE, out)
            try:
                self.orthanc.set_modality("movescp", MOVE_SCP_AE, port)
                ae = AE(ae_title=MOVE_SCU_AE)
                ae.add_requested_context(model)
                ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, self.timeout, self.timeout
                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = self.study
                started = time.perf_counter()
                assoc = ae.associate("127.0.0.1", self.orthanc.dicom_port, ae_title=ORTHANC_AE)
                if not assoc.is_established:
                    raise RuntimeError("C-MOVE: Orthanc refused the association")
                final: Any = None
                try:
                    for status, _ in assoc.send_c_move(query, MOVE_SCP_AE, model):
                        if status is None or "Status" not in status:
                            raise RuntimeError("C-MOVE: no response (timeout or abort)")
                        if int(status.Status) not in (0xFF00, 0xFF01):
                            final = status
                    seconds = time.perf_counter() - started
                finally:
                    assoc.release()
                if final is None or int(final.Status) != 0:
                    raise RuntimeError(f"C-MOVE: final status {final}")
            finally:
                self.procs.stop(process)
            row.seconds.append(seconds)
            row.outputs.append(count_files(out))
            shutil.rmtree(out, ignore_errors=True)

    # veil pull

    def pull_available(self) -> bool:
        try:
            done = subprocess.run([*self.veil, "pull", "--help"], capture_output=True, timeout=120, env=ENV)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def run_pull_wado(self) -> None:
        self.run_pull(wado=True)

    def run_pull(self, wado: bool = False) -> None:
        row = (self.row("pull-wado", "veil pull (QIDO/WADO-RS + de-identify)") if wado
               else self.row("pull", "veil pull (C-MOVE + de-identify)"))
        if not self.pull_available():
            row.note = "veil pull: not available"
            print(row.note, flush=True)
            return
        from orthanc import free_port

        studies = self.work / "pull-studies.txt"
        studies.write_text(self.study + "\n")
        for _ in range(self.repeat):
            base = self.folder("pull")
            dst = base / "dst"
            port = free_port()
            self.orthanc.set_modality("veilpull", PULL_AE, port)
            source = (
                ["--qido", f"{self.orthanc.url}/dicom-web"]
                if wado
                else ["--from", f"{ORTHANC_AE}@127.0.0.1:{self.orthanc.dicom_port}", "--move-ae", PULL_AE,
                      "--move-port", str(port)]
            )
            command = [
                *self.veil,
                "pull",
                str(dst),
                *source,
                "--calling-ae",
                PULL_AE,
                "--studies",
                str(studies),
                "--recipe",
                self.recipe,
                "--key",
                str(self.key),
                "--workers",
                "2",
            ]
            started = time.perf_counter()
            process = self.procs.start(command, base / "pull.log")
            code = self.procs.finish(process, self.timeout, "veil pull")
            seconds = time.perf_counter() - started
            if code not in (0, 3):  # 3: finished with quarantined files (counted below)
                row.note = f"veil pull failed (exit {code})"
                print(f"{row.note}: {tail(base / 'pull.log')}", flush=True)
                return
            row.seconds.append(seconds)
            row.outputs.append(count_dcm(dst))
            shutil.rmtree(base, ignore_errors=True)

    # all

    def run(self, only: set[str]) -> None:
        for name, step in (
            ("storescp", self.run_storescp),
            ("orthanc", self.run_orthanc),
            ("serve", self.run_serve),
            ("move", self.run_move),
            ("pull", self.run_pull),
            ("pull-wado", self.run_pull_wado),
        ):
            if only and name not in only:
                continue
            if name in ("move", "pull", "pull-wado") and self.orthanc is None:
                self.run_orthanc()  # they retrieve from an Orthanc that holds the study
            print(f"running {name} ...", flush=True)
            step()

    def close(self) -> None:
        try:
            self.procs.stop_all()
        finally:
            self.stop_orthanc()

    def stop_orthanc(self) -> None:
        orthanc, self.orthanc = self.orthanc, None
        if orthanc is None:
            return
        if hasattr(orthanc, "client"):
            orthanc.stop()  # by its PID; closes its HTTP client and log
            return
        process = getattr(orthanc, "process", None)  # interrupted while it started
        if process is not None:
            terminate(process)
        if getattr(orthanc, "log", None) is not None:
            orthanc.log.close()


# --- report ------------------------------------------------------------------------------------------------

RATIOS = [
    # (what, numerator row, denominator row, comparison, target)
    ("veil serve receive / storescp", "serve", "storescp", ">=", 0.5),
    ("veil serve receive / Orthanc ingest", "serve", "orthanc", ">", 1.0),
    ("veil pull / Orthanc C-MOVE", "pull", "move", ">=", 0.8),
    ("veil pull by WADO-RS / Orthanc C-MOVE", "pull-wado", "move", ">=", 0.8),
]


def ratios(rows: dict[str, Row], files: int) -> list[dict[str, Any]]:
    found = []
    for what, top, bottom, op, target in RATIOS:
        a = rows[top].rate(files) if top in rows else None
        b = rows[bottom].rate(files) if bottom in rows else None
        value = a / b if a and b else None
        met = None if value is None else (value >= target if op == ">=" else value > target)
        found.append({"what": what, "ratio": value, "target": f"{op} {target}", "met": met})
    return found


def report(bench: Bench, header: str) -> dict[str, Any]:
    n = bench.n
    print(f"\n{header}\n")
    print(f"{'row':<48} {'median s':>9} {'range s':>15} {'files/s':>9} {'outputs':>8}")
    for row in bench.rows.values():
        if not row.seconds:
            print(f"{row.label:<48} {row.note or 'no result'}")
            continue
        spread = f"{min(row.seconds):.3f}-{max(row.seconds):.3f}" if len(row.seconds) > 1 else ""
        outputs = "/".join(str(o) for o in sorted(set(row.outputs)))
        rate = row.rate(n) or 0.0
        print(f"{row.label:<48} {row.median:>9.3f} {spread:>15} {rate:>9,.0f} {outputs:>8}")
        if any(o != n for o in row.outputs):
            print(f"{'':<48} warning: outputs {row.outputs}, expected {n} each")
    found = ratios(bench.rows, n)
    print()
    for r in found:
        value = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        verdict = "" if r["met"] is None else ("met" if r["met"] else "NOT met")
        print(f"{r['what']:<48} {value:>9}   target {r['target']:<7} {verdict}")
    return {
        "rows": {
            key: {
                "label": row.label,
                "seconds": row.seconds,
                "median_seconds": row.median,
                "files_per_second": row.rate(n),
                "outputs": row.outputs,
                "note": row.note,
            }
            for key, row in bench.rows.items()
        },
        "ratios": found,
    }


def first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return next((line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()), "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--instances", type=int, default=2000, help="CT instances of one study (default 2,000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the median is reported")
    parser.add_argument(
        "--work", type=Path, help="where the inputs and the key go (default: a temporary folder)"
    )
    parser.add_argument(
        "--scratch", type=Path, help="where the servers write (default: /dev/shm where present)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--only", default="", help="comma-separated rows: storescp,orthanc,serve,move,pull,pull-wado")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("--recipe", default="research", help="the recipe veil serve and veil pull apply "
                                                             "(default research)")
    args = parser.parse_args()
    if args.instances < 1 or args.repeat < 1:
        parser.error("--instances and --repeat are at least 1")
    only = {name for name in args.only.split(",") if name}
    unknown = only - {"storescp", "orthanc", "serve", "move", "pull", "pull-wado"}
    if unknown:
        parser.error(f"--only: unknown row {sorted(unknown)[0]!r}")

    sys.path.insert(0, str(SUPPORT))  # tests/support: the Orthanc helper and the study writer
    from net_study import write_study
    from pydicom import dcmread

    # A SIGTERM ends the run like a Ctrl-C: through the finally blocks that stop every process by its PID.
    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="veil-net-bench-")) if own_work else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm")
    scratch_parent = args.scratch or (shm if shm.is_dir() and os.access(shm, os.W_OK) else None)
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="veil-net-bench-", dir=scratch_parent))
    inputs = work / "net-bench-instances"
    bench: Bench | None = None
    try:
        shutil.rmtree(inputs, ignore_errors=True)
        print(f"writing {args.instances:,} instances into {inputs} ...", flush=True)
        files = write_study(inputs, args.instances)
        study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        size = sum(p.stat().st_size for p in files)
        bench = Bench(files, study, scratch, work, args.repeat, args.recipe)
        if bench.storescu is None or bench.storescp is None:
            print(
                "net_bench: DCMTK's storescu and storescp are needed (apt-get install dcmtk)", file=sys.stderr
            )
            return 2
        import pynetdicom

        bench.versions.update(
            dcmtk=first_line([bench.storescu, "--version"]).strip("$ "),
            veil=first_line([*bench.veil, "--version"]),
            pynetdicom=pynetdicom.__version__,
            python=platform.python_version(),
        )
        bench.run(only)
        header = (
            f"{bench.n:,} CT instances of one study ({size / bench.n / 1000:.0f} KB each), median of "
            f"{args.repeat}; {os.cpu_count()} CPUs; servers write under {scratch_parent or tempfile.gettempdir()}"
        )
        summary = report(bench, header)
        if args.json is not None:
            summary.update(
                instances=bench.n,
                bytes_per_instance=size / bench.n,
                repeat=args.repeat,
                cpus=os.cpu_count(),
                scratch=str(scratch_parent or tempfile.gettempdir()),
                versions=bench.versions,
                when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            print(f"\nJSON: {args.json}")
        return 0
    except KeyboardInterrupt:
        print("\nnet_bench: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        try:
            if bench is not None:
                bench.close()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            shutil.rmtree(scratch, ignore_errors=True)
            if own_work and not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            elif not args.keep:
                shutil.rmtree(inputs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
