"""A Ray cluster of ``ray start --block`` nodes on loopback (token auth, 1 CPU each) for the
multi-node tests, and the Linux /proc helpers that find and stop exactly the processes it started:
each node's ``ray start`` process and every process that inherited the node's marker variable
(raylet, agents, workers, job drivers), plus drivers holding the cluster's own auth token. Never
``ray stop`` (it stops every Ray on the machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def read_proc(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def with_env(*entries: str) -> set[int]:
    """PIDs whose environment holds one of ``entries`` (NAME=value only this module's processes have)."""
    keys = {e.encode() for e in entries}
    return {
        int(d)
        for d in os.listdir("/proc")
        if d.isdigit() and keys.intersection(read_proc(f"/proc/{d}/environ").split(b"\0"))
    }


def alive(pid: int) -> bool:
    stat = read_proc(f"/proc/{pid}/stat").decode(errors="replace")
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    return read_proc(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def send_signal(pids: set[int], sig: int) -> None:
    for p in pids - {os.getpid()}:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before by this process: the OS may offer a port it
    has just released again (two calls once gave Ray's dashboard and its agent the same port, and
    `ray start` refused it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class Node:
    """One ``ray start --block`` node (1 CPU); all it starts inherits ``AUTOML_TEST_NODE=<its dir>``."""

    def __init__(self, name: str, root: Path, args: list[str], env: dict[str, str]):
        self.dir, self.log = root / name, root / f"{name}.log"
        self.marker = f"AUTOML_TEST_NODE={self.dir}"
        cmd = [
            RAY,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            "--memory=2000000000",
            "--object-store-memory=200000000",
            f"--temp-dir={self.dir}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
            *args,
        ]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**env, "AUTOML_TEST_NODE": str(self.dir)},
            )
        end = time.time() + 180
        while "Ray runtime started" not in self.log.read_text():
            assert self.proc.poll() is None and time.time() < end, self.log.read_text()
            time.sleep(0.3)

    def pids(self) -> set[int]:
        return {self.proc.pid} | with_env(self.marker)

    def kill(self) -> None:
        """The node dies at once, as a machine would: SIGKILL to all its processes."""
        send_signal(self.pids(), signal.SIGKILL)
        self.proc.wait(timeout=30)


#: the GCS declares a node dead after health_check_failure_threshold missed checks, one every
#: health_check_period_ms: Ray's defaults (5 x 3 s) kept a search or a streaming final waiting
#: ~14 s for the lost node (also used by test_streaming_cluster.py's Ray cluster_utils cluster)
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


class Cluster:
    def __init__(self, root: Path, env: dict[str, str], token: str):
        self.root, self.token, self.nodes = root, token, []
        self.env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, PYTHONUNBUFFERED="1")
        port, dash = free_port(), free_port()
        self.address, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        self.nodes.append(
            Node(
                "head",
                root,
                [
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dash}",
                    f"--ray-client-server-port={free_port()}",
                    f"--system-config={json.dumps(FAST_NODE_DEATH)}",
                ],
                self.env,
            )
        )
        self.nodes.append(Node("worker", root, [f"--address={self.address}"], self.env))

    def driver_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, "RAY_ADDRESS": self.address, **extra}

    def job_status(self, submission_id: str) -> str:
        import httpx

        r = httpx.get(
            f"{self.dashboard}/api/jobs/{submission_id}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        r.raise_for_status()
        return r.json()["status"]


def stop_cluster(root: Path, token: str) -> None:
    """SIGTERM to every process started for the cluster in ``root`` (its nodes' and the drivers
    holding its token), 5 s of grace, then SIGKILL."""

    def ours() -> set[int]:
        found = with_env(
            f"AUTOML_TEST_NODE={root}/head", f"AUTOML_TEST_NODE={root}/worker", f"RAY_AUTH_TOKEN={token}"
        )
        return {p for p in found if alive(p)}

    send_signal(ours(), signal.SIGTERM)
    end = time.time() + 5
    while ours() and time.time() < end:
        time.sleep(0.2)
    send_signal(ours(), signal.SIGKILL)
    time.sleep(0.5)
    assert not ours(), f"processes left behind: {ours()}"
