"""``veil serve``: run the DICOM node of a configuration file (receive, de-identify, forward), or ask a running
one for its status."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from veil.cli.exits import EXIT_FATAL, EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "serve", help="run veil as a DICOM node: a Storage SCP that de-identifies each complete study and "
                      "forwards it (C-STORE, STOW-RS or a folder); 'veil serve status' asks a running node")
    sp.add_argument("action", nargs="?", choices=("run", "status"), default="run")
    sp.add_argument("--config", type=Path, required=True, metavar="node.yml")


def command(args: argparse.Namespace) -> int:
    import logging

    from veil.net.config import load_config

    config = load_config(args.config)
    if args.action == "status":
        return _status(config.work)
    try:
        import pynetdicom  # noqa: F401

        from veil.net.node import Node
    except ImportError:
        print("veil serve: error: the DICOM node needs its extra: pip install 'veil[net]'", file=sys.stderr)
        return EXIT_FATAL

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines name AE titles and UIDs
    node = Node(config)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    node.start()
    print(f"veil serve: {config.ae_title} on {config.host}:{node.port}; health http://127.0.0.1:{node.health_port}"
          "/health", flush=True)
    done.wait()
    node.stop()
    return EXIT_OK


def _status(work: Path) -> int:
    import urllib.request

    try:
        state = json.loads((work / "node.json").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{int(state['health_port'])}/health", timeout=5) as reply:
            status = json.loads(reply.read())
    except (OSError, ValueError, KeyError) as exc:
        print(f"veil serve status: no node answers for {work} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(status, indent=2, sort_keys=True))
    return EXIT_OK
