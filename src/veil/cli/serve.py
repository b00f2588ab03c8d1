"""``veil serve``: run the DICOM node of a configuration file (receive, de-identify, forward); ask a running one
for its status, or to treat the studies being received as complete (``trigger``); list, retry or drop the
dead letters of its queues (``dead``, ``retry``, ``drop``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from veil.net.config import NodeConfig

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "serve", help="run veil as a DICOM node: a Storage SCP that de-identifies each complete study and "
                      "forwards it (C-STORE, STOW-RS or a folder); 'veil serve status' asks a running node")
    sp.add_argument("action", nargs="?", choices=("run", "status", "trigger", "dead", "retry", "drop"), default="run",
                    help="run (default); status; trigger: every study being received is complete now; dead: "
                         "list the dead letters; retry / drop: a dead letter (--study) or all (--all)")
    sp.add_argument("--config", type=Path, required=True, metavar="node.yml")
    sp.add_argument("--destination", metavar="NAME", help="retry / drop / dead: only this destination's queue")
    sp.add_argument("--study", metavar="DIGEST", help="retry / drop: the study (its digest, as 'dead' lists it)")
    sp.add_argument("--all", action="store_true", help="retry / drop: every dead letter")


def command(args: argparse.Namespace) -> int:
    import logging

    from veil.net.config import load_config

    config = load_config(args.config)
    if args.action == "status":
        return _status(config.work)
    if args.action == "trigger":
        return _trigger(config.work)
    if args.action in ("dead", "retry", "drop"):
        return _dead_letters(config, args)
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


def _node_url(work: Path, path: str) -> str:
    """The running node's loopback health address for ``path`` (from ``WORK/node.json``)."""
    state = json.loads((work / "node.json").read_text())
    return f"http://127.0.0.1:{int(state['health_port'])}{path}"


def _status(work: Path) -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(_node_url(work, "/health"), timeout=5) as reply:
            status = json.loads(reply.read())
    except (OSError, ValueError, KeyError) as exc:
        print(f"veil serve status: no node answers for {work} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(status, indent=2, sort_keys=True))
    return EXIT_OK


def _trigger(work: Path) -> int:
    import urllib.error
    import urllib.request

    try:
        token = (work / "control.token").read_text().strip()
        request = urllib.request.Request(_node_url(work, "/trigger"), method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5):
            pass
    except urllib.error.HTTPError as exc:
        print(f"veil serve trigger: the node answered HTTP {exc.code}", file=sys.stderr)
        return EXIT_FATAL
    except (OSError, ValueError, KeyError) as exc:
        print(f"veil serve trigger: no node answers for {work} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FATAL
    print("veil serve trigger: every study being received is complete now", file=sys.stderr)
    return EXIT_OK


def _dead_letters(config: NodeConfig, args: argparse.Namespace) -> int:
    from veil.net.node import finish_study
    from veil.net.queue import JobQueue
    from veil.net.spool import Spool

    names = [d.name for d in config.destinations]
    if args.destination and args.destination not in names:
        print(f"veil serve {args.action}: no destination {args.destination!r} (there are: {', '.join(names)})",
              file=sys.stderr)
        return EXIT_USAGE
    queues = {n: JobQueue(config.work / "queue" / n) for n in names}
    chosen = {n: q for n, q in queues.items() if not args.destination or n == args.destination}
    if args.action == "dead":
        rows = [{"destination": n, "study": j.study, "attempts": j.attempts, "error": j.error}
                for n, q in chosen.items() for j in q.dead()]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not (args.study or args.all) or (args.study and args.all):
        print(f"veil serve {args.action}: give --study DIGEST or --all", file=sys.stderr)
        return EXIT_USAGE
    done = 0
    spool = Spool(config.work, None)  # the folders a dropped study's outputs and audit are in
    for queue in chosen.values():
        for job in queue.dead():
            if args.all or job.study == args.study:
                done += queue.retry(job.study) if args.action == "retry" else queue.drop(job.study)
                if args.action == "drop":
                    finish_study(spool, list(queues.values()), job.study)
    if not done:
        print(f"veil serve {args.action}: no such dead letter", file=sys.stderr)
        return EXIT_FATAL
    verb = "back in the queue" if args.action == "retry" else "dropped"
    print(f"veil serve {args.action}: {done:,} dead letter{'s' if done != 1 else ''} {verb}", file=sys.stderr)
    return EXIT_OK
