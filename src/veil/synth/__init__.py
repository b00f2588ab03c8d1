"""``veil synth``: a deterministic generator of synthetic DICOM archives (for tests, benchmarks and demos)."""
