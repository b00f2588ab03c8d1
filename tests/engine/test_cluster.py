"""`veil run --address` on a real two-node Ray cluster started on this machine, and the manifests in cluster/.

The cluster test starts a head and a second node with ``ray start --block``, each in its own session and its
own ``--temp-dir``, runs ``veil run`` against the head's address, and kills the second node mid-run the way a
machine dies: every process of that node (the ``ray start`` process, raylet, agents, and the worker processes
the raylet spawned, which run in process groups of their own) is frozen with SIGSTOP and then SIGKILLed. The
shards it held are retried on the head (``max_retries``); the test shows nothing is lost or changed: exit 0,
outputs byte-identical to an in-process run, one audit row per input.

Only the processes this test started are stopped, never ``ray stop --force``: that stops every Ray instance
of the user on the machine (another test session's, a developer's). Each process of the test cluster carries
a marker in its environment, and teardown kills every process that has it and checks that none is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from trees import tree

from veil import audit
from veil.cli.main import EXIT_OK, main
from veil.synth import write_archive

pytestmark = pytest.mark.cluster

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster"
MARKER = "VEIL_TEST_RAY_CLUSTER"
STARTED = "Ray runtime started"


# --- the manifests --------------------------------------------------------------------------------------


def test_cluster_launcher_yaml_parses_and_starts_ray_on_every_node() -> None:
    config = yaml.safe_load((CLUSTER_DIR / "ray-cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "veil" in setup
    assert not any("key" in str(v).lower() for v in config.get("file_mounts", {}).values()), (
        "file_mounts go to every node: the project key must not be among them"
    )
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("ray start --address" in c for c in config["worker_start_ray_commands"])


def test_rayjob_runs_veil_with_the_key_secret_read_only_and_shared_storage() -> None:
    docs = [d for d in yaml.safe_load_all((CLUSTER_DIR / "rayjob.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"RayJob", "PersistentVolumeClaim"} <= set(kinds)
    job = kinds["RayJob"]
    entrypoint = " ".join(job["spec"]["entrypoint"].split())
    assert (
        "veil run /data/in /data/out --recipe research --key /keys/project.key --address auto" in entrypoint
    )
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    cluster = job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]

    def volume(spec: dict, name: str) -> dict:
        return next(v for v in spec["volumes"] if v["name"] == name)

    def mounts(spec: dict) -> dict[str, str]:
        """mount path -> volume name, over the pod's main containers (not its init containers)."""
        return {m["mountPath"]: m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}

    for spec in [head, *workers]:  # every pod sees SRC and DST at the same path
        data = mounts(spec)["/data"]
        assert volume(spec, data)["persistentVolumeClaim"]["claimName"] == claim
    secrets_ = [v for v in head["volumes"] if "secret" in v]
    assert len(secrets_) == 1 and secrets_[0]["secret"]["defaultMode"] == 0o400
    assert "/keys" in mounts(head)
    for spec in workers:  # the key stays with the driver: workers get derived sub-keys from the key actor
        assert "/keys" not in mounts(spec)
        assert all("secret" not in v for v in spec.get("volumes", []))


# --- the two-node cluster -------------------------------------------------------------------------------


def _ray_cli() -> str | None:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, int]:
    """pid -> parent pid of every process this user can see."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{name}/stat") as fh:
                    found[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
    return found


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it that is still alive."""
    parents = _processes()
    found = {root} if root in parents else set()
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    return ""


def _kill_tree(root: int) -> set[int]:
    """Freezes ``root`` and all its descendants (so none can spawn or be reparented), then SIGKILLs them."""
    frozen: set[int] = set()
    for _ in range(5):
        members = _descendants(root) - frozen
        if not members:
            break
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= members
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return frozen


def _marked(marker: str) -> set[int]:
    """Processes whose environment carries this test cluster's marker (ours only: same user)."""
    needle = f"{MARKER}={marker}".encode()
    found = set()
    for pid in _processes():
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.add(pid)
    return found


class TwoNodeCluster:
    """A Ray head and one more node on this machine, each ``ray start --block`` in a session of its own."""

    def __init__(self, ray: str) -> None:
        self.ray = ray
        # Short: Ray's AF_UNIX socket paths live under --temp-dir and must stay under 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="veil-ray-", dir="/tmp"))
        self.port = _free_port()
        token = self.base / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(
            {
                MARKER: str(self.base),
                # Token auth with a token of this cluster's own; the driver must say so too (an explicit address
                # never turns token auth on by itself).
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token),
                "RAY_USAGE_STATS_ENABLED": "0",
                # Declare a dead node dead in about two seconds, not fifteen: test time, no behaviour change.
                "RAY_health_check_initial_delay_ms": "1000",
                "RAY_health_check_period_ms": "500",
                "RAY_health_check_timeout_ms": "500",
                "RAY_health_check_failure_threshold": "3",
            }
        )
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.address = f"127.0.0.1:{self.port}"

    def start(self, name: str, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Starts a node (the first is the head); returns once it reports itself started."""
        head = not self.nodes
        args = [
            self.ray,
            "start",
            "--block",
            "--num-cpus=1",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.base / name}",
            "--object-store-memory=100000000",
            # Each node's agents on ports of their own: two nodes share this host (and maybe another
            # Ray instance does too).
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
        ]
        if head:
            args += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={_free_port()}",
            ]
        else:
            args += [f"--address={self.address}"]
        log = self.base / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.nodes[name] = proc
        deadline = time.monotonic() + timeout
        while STARTED not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({name}) failed:\n{self.log_tail(name)}")
            time.sleep(0.1)
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def busy_workers(self, name: str) -> list[int]:
        """Worker processes of a node that are running a shard now."""
        return [pid for pid in _descendants(self.nodes[name].pid) if "_ray_shard" in _command(pid)]

    def kill_node(self, name: str) -> set[int]:
        """The node dies as a machine would: all its processes at once, no clean-up, no goodbye to the GCS."""
        killed = _kill_tree(self.nodes[name].pid)
        self.nodes[name].wait(timeout=10)
        return killed

    def stop(self) -> list[str]:
        """Kills every process of this cluster; returns the commands of any still alive afterwards."""
        for proc in reversed(list(self.nodes.values())):
            if proc.poll() is None:  # never by the pid of a reaped process: it may be someone else's now
                _kill_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        left = _marked(str(self.base))
        while left and time.monotonic() < deadline:
            for pid in left:
                _kill_tree(pid)
            time.sleep(0.2)
            left = _marked(str(self.base))
        survivors = [f"{pid}: {_command(pid)[:120]}" for pid in left]
        shutil.rmtree(self.base, ignore_errors=True)
        return survivors


@pytest.fixture
def cluster():
    ray = _ray_cli()
    if ray is None:
        pytest.skip("the ray command is not installed")
    c = TwoNodeCluster(ray)
    try:
        try:
            c.start("head")
        except (RuntimeError, OSError) as exc:
            pytest.skip(f"cannot start a Ray head here: {exc}")
        yield c
    finally:
        survivors = c.stop()
    assert not survivors, f"Ray processes of the test cluster survived teardown: {survivors}"


def test_a_node_killed_mid_run_loses_nothing(cluster, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    write_archive(src, patients=20, series_per_study=2, instances_per_series=10)  # 400 files
    key = tmp_path / "project.key"
    assert main(["keygen", str(key)]) == EXIT_OK
    reference = tmp_path / "reference"
    assert main(["run", str(src), str(reference), "--key", str(key), "--workers", "1", "--json"]) == EXIT_OK
    capsys.readouterr()
    assert len(tree(reference)) == 400

    cluster.start("second")
    dst = tmp_path / "out"
    driver_log = tmp_path / "driver.err"
    command = [sys.executable, "-m", "veil.cli", "run", str(src), str(dst), "--key", str(key)]
    command += ["--address", cluster.address, "--shard-files", "4", "--workers", "2", "--json"]
    driver_out = tmp_path / "driver.out"
    with open(driver_out, "wb") as out, open(driver_log, "wb") as err:
        driver = subprocess.Popen(command, env=cluster.env, stdout=out, stderr=err, start_new_session=True)
    try:
        parts = audit.audit_dir(dst)
        deadline = time.monotonic() + 60
        busy: list[int] = []
        done = 0
        while time.monotonic() < deadline and driver.poll() is None:
            done = len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0
            busy = cluster.busy_workers("second")
            if done >= 10 and busy:
                break
            time.sleep(0.01)
        assert driver.poll() is None and busy, (
            f"the second node must be killed while it runs a shard (finished shards {done}, driver exit "
            f"{driver.poll()}):\n{driver_log.read_text(errors='replace')[-3000:]}"
        )
        killed_at = time.monotonic()
        cluster.kill_node("second")
        finished_at_kill = len(audit.completed_shards(dst))
        assert finished_at_kill < 100, "the kill must land mid-run"
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"veil run hung after the node was killed: {len(audit.completed_shards(dst))} of 100 shards "
                f"finished 60 s after the kill\n{driver_log.read_text(errors='replace')[-3000:]}"
            )
        recovery = time.monotonic() - killed_at
    finally:
        if driver.poll() is None:
            _kill_tree(driver.pid)
        driver.wait()
    stderr = driver_log.read_text(errors="replace")
    assert driver.returncode == EXIT_OK, stderr[-3000:]
    # Ray's driver prints "(raylet) Task _ray_shard failed ... will be retried" (and, as the killed node is
    # noticed, lines about it) on stdout whatever log_to_driver says, before or after the summary: the summary
    # is the JSON object that starts a line.
    text = driver_out.read_text()
    start = 0 if text.startswith("{") else text.index("\n{") + 1
    result, _ = json.JSONDecoder().raw_decode(text[start:])
    assert result["mode"] == "ray-cluster"
    assert result["this_run"]["files"] == result["this_run"]["written"] == 400
    assert tree(dst) == tree(reference)
    assert not list(dst.rglob("*.veil-tmp"))
    table = audit.read_audit(dst)
    assert table.num_rows == 400 and len(set(table.column("input_digest").to_pylist())) == 400
    assert set(table.column("status").to_pylist()) == {"written"}
    print(f"second node killed with {finished_at_kill}/100 shards done; run finished {recovery:.1f} s later")
