"""``veil verify``: an independent check of a run's output (it never imports the native core): leaks of the
inputs' identifiers, integrity of UIDs and references, conformance (dciodvfy) and the report."""
