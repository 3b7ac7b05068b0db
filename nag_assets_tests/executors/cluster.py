"""A real Ray cluster on loopback for the tests: `ray start --head` in its own temporary
folder, with token authentication, its processes known so a test can kill a worker or the
whole cluster (only this cluster's processes, found by its folder and the raylet's tree).
Worker nodes (`add_node`: `ray start --address`, each in its own folder) make it a
multi-node cluster on one machine; killing a node's processes is losing that node."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(temp_dir: Path) -> list[psutil.Process]:
    """The processes started with `temp_dir` on their command line, and their children."""
    own, me = [], os.getpid()
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.pid != me and any(str(temp_dir) in c for c in p.info["cmdline"] or []):
                own.append(p)
    workers = [c for p in own for c in _children(p)]
    return list({p.pid: p for p in own + workers}.values())


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


@dataclass
class Node:
    """A worker node: its raylet, workers and helpers, all under its own `temp_dir`; it
    alone has the custom resource `resource` (how a test finds its Ray node id)."""

    temp_dir: Path
    resource: str
    lost: bool = False  # killed
    _id: str = ""

    def node_id(self) -> str:
        """Its Ray node id (the driver connected to the cluster; kept once known)."""
        import ray

        if not self._id:
            ids = [n["NodeID"] for n in ray.nodes() if self.resource in n["Resources"]]
            assert len(ids) == 1, f"{self.resource}: {ids}"
            self._id = ids[0]
        return self._id

    def kill(self) -> None:
        """Lose this node: SIGKILL its raylet and every process of it, as a crash would."""
        self.lost = True
        _kill(_processes(self.temp_dir))

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@dataclass
class LocalCluster:
    address: str
    temp_dir: Path
    nodes: list[Node] = field(default_factory=list)  # worker nodes, added by `add_node`

    def processes(self) -> list[psutil.Process]:
        """The head's own processes (GCS, raylet, its helpers) and every worker on it."""
        return _processes(self.temp_dir)

    def workers(self, title: str = "NagWorker") -> list[psutil.Process]:
        """The actor processes of class `title`."""
        out = []
        for p in self.processes():
            try:
                # `ray::NagWorker...`, or `ray::<actor name>:NagWorker.<method>` when named
                if any(c.startswith("ray::") and title in c for c in p.cmdline()):
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def add_node(self, num_cpus: int, env: dict[str, str], resource: str) -> Node:
        """A worker node joined to this cluster: `ray start --address` with `num_cpus` CPUs,
        no GPU, the custom resource `resource` (1 unit) and its own temporary folder."""
        node = Node(Path(tempfile.mkdtemp(prefix="nagnode-")), resource)
        cmd = [
            *RAY_START,
            f"--address={self.address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f'--resources={{"{resource}": 1}}',
            "--disable-usage-stats",
            f"--temp-dir={node.temp_dir}",
        ]
        out = subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=180
        )
        if out.returncode != 0:
            node.remove()
            raise RuntimeError(f"ray start (node) failed ({out.returncode}): {out.stderr[-2000:]}")
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        """Kill every process of this cluster and its nodes (never another cluster's) and
        their folders."""
        for node in self.nodes:
            node.remove()
        _kill(self.processes())
        shutil.rmtree(self.temp_dir, ignore_errors=True)


RAY_START = [sys.executable, "-m", "ray.scripts.scripts", "start"]


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def auth_env() -> dict[str, str]:
    """Token authentication, as Ray 2.60 clusters use by default, with a token of the test
    session's own (never the user's ~/.ray/auth_token)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


def start_cluster(num_cpus: int, env: dict[str, str], gpus: int | None = 0) -> LocalCluster:
    """`ray start --head` on 127.0.0.1 with `num_cpus` CPUs and `gpus` GPUs (None: what Ray
    finds); `env` for its processes and workers (PYTHONPATH, credentials, the auth token)."""
    # short: Ray puts unix sockets in it, whose paths may not exceed 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="nagray-"))
    port = free_port()
    cmd = [
        *RAY_START,
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        *([f"--num-gpus={gpus}"] if gpus is not None else []),
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    started = time.monotonic()
    out = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=180
    )
    if out.returncode != 0:
        LocalCluster(f"127.0.0.1:{port}", temp_dir).stop()
        raise RuntimeError(f"ray start failed ({out.returncode}): {out.stderr[-2000:]}")
    cluster = LocalCluster(f"127.0.0.1:{port}", temp_dir)
    cluster.start_seconds = round(time.monotonic() - started, 1)
    return cluster
