"""The backbone pass on a Ray cluster: a pool of long-lived actors behind the extractor seam.

Shape, and why:
- Each actor loads the backbone once and keeps it for its life. Actors are *named and
  detached* (namespace `nag_assets`, name = the backbone spec and actor resources plus the
  actor's number), so every later Dagster run, a separate process, finds the same actors:
  hundreds of per-partition runs pay no model load, only a connect (per-shard overhead:
  benchmarks/ray_scaling.py). Each partition stays its own run, materialization and data
  version (no single-run backfill, so dagster-io/dagster#34013 does not arise).
- An actor gets its own device: Ray assigns it `gpus_per_actor` GPUs (CUDA_VISIBLE_DEVICES),
  so `device="auto"` is its own GPU; CPU actors use `cpus_per_actor` torch threads.
- An actor reads its chunks straight from the storage root (`ChunkRef`: local or S3, with
  the root's options; credentials from the worker's own environment) and returns the chunk's
  NAG rows; the step writes them through its one atomic streaming write. Results come back in
  chunk order, at most `IN_FLIGHT_PER_ACTOR` chunks per actor outstanding (bounded memory).
- Actors are placed with Ray's SPREAD strategy, one per node before two on one, so a lost
  node takes as few of them as it can.
- A worker that dies (its process, or its whole node) is restarted by Ray (`max_retries`
  restarts) and its chunks go back to the queue, to whichever actors are up: the driver, not
  Ray, retries chunks (`max_task_retries=0`), so a worker Ray cannot place again (no room
  left) never holds a chunk hostage; the step finishes on the actors left, and the restarted
  one rejoins when it answers. A chunk that took its worker down `max_retries` + 1 times, or
  every worker gone for good, or none back within `restart_wait_s`, fails the file alone
  with an `ExecutorError` naming it, the chunk and the lost nodes; nothing is written. A
  cluster that goes away gives an `ExecutorError` naming it; a rerun redoes only the files
  whose output is missing. What a user sees: docs/ray_multinode.md.
- Actors of another backbone spec in the namespace are retired when a pool is made, so a
  changed model never leaves old actors holding the devices.

Ray is imported only here, and only when used: the package works without it.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

from nag_assets.executors import ExecutorError, ExecutorSettings
from nag_assets.pipeline.common import NagSettings, Progress
from nag_assets.pipeline.extractor import BackboneSpec, ChunkNags, NagJob, extract_chunk
from nag_assets.sources.chunks import ChunkRef, FilePlan
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, digest

log = logging.getLogger(__name__)

NAMESPACE = "nag_assets"
ACTOR_PREFIX = "nag-worker-"
POOL_VERSION = "spread-1"  # in the pool's name: actors made with older options are retired
IN_FLIGHT_PER_ACTOR = 2  # one computing, one queued: no actor waits on the driver
RESTART_WAIT_S = 120.0  # no actor up: how long a step waits for a lost one to be back
JOIN_GRACE_S = 5.0  # after the first actor answers, how long the others get before a start
POLL_S = 1.0  # how often a waiting step looks again at the actors that are down
PING_EVERY_S = 0.5  # at most this often an `info` call to an actor that is down


@dataclass(frozen=True)
class BackboneInfo:
    """What a step needs of a backbone that runs elsewhere (the actors hold the model): a
    `nag.BackboneFacts`, as a loaded `Backbone` is."""

    name: str
    fingerprint: str
    num_layers: int
    d_ff: int
    neuron_type: str  # `nag.adapters`: which neurons the NAGs hold


@dataclass(frozen=True)
class WorkerInfo:
    """One actor: its process and node, how often it loaded the model, chunks it did."""

    name: str
    pid: int
    loads: int
    chunks: int
    device: str
    gpu_ids: tuple
    restarted: bool
    node_id: str = ""  # the Ray node it runs on: what a lost node's messages name


class NagWorker:
    """A Ray actor (made remote in `_actor_class`): one backbone, loaded at start, kept."""

    def __init__(self, spec: BackboneSpec, threads: int):
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.spec = spec
        self.backbone = spec.load()
        self.loads, self.chunks = 1, 0

    def info(self) -> tuple[BackboneInfo, WorkerInfo]:
        import ray

        b, ctx = self.backbone, ray.get_runtime_context()
        return BackboneInfo(b.name, b.fingerprint, b.num_layers, b.d_ff, b.neuron_type), WorkerInfo(
            ctx.get_actor_name() or "",
            os.getpid(),
            self.loads,
            self.chunks,
            str(b.device),
            tuple(ray.get_gpu_ids()),
            ctx.was_current_actor_reconstructed,
            ctx.get_node_id(),
        )

    def extract(self, ref: ChunkRef, job: NagJob) -> ChunkNags:
        self.chunks += 1
        return extract_chunk(ref, self.backbone, job)

    def impact_baseline(self, root: str, options: dict, settings: NagSettings) -> str:
        """Normalized impact: compute the baseline here (the driver holds no model) and
        store it where the step's own `impact_baseline` then reads it."""
        from nag_assets.pipeline.impact import impact_baseline

        return impact_baseline(Storage(root, options), self.backbone, settings)[1]


_connected: list[str] = []  # the address this process is connected to, if any


def connect(address: str | None) -> str:
    """Connect this process to the cluster at `address` (RAY_ADDRESS, else "auto": the
    cluster of `ray start` on this machine), once; a process connected elsewhere reconnects."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    if ray.is_initialized() and _connected == [address]:
        return address
    disconnect()
    try:
        _check_reachable(address)
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except Exception as e:  # ConnectionError, AuthenticationError, RuntimeError, ...
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address!r} (NAG_EXECUTOR=ray; set RAY_ADDRESS "
            f"or ExecutorResource.ray_address): {type(e).__name__}: {_first_line(e)}"
        ) from e
    _connected[:] = [address]
    return address


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at a
    host:port address ("auto" and unparsable addresses are left to Ray)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
        pass


def disconnect() -> None:
    import ray

    _connected.clear()
    if ray.is_initialized():
        ray.shutdown()


@dataclass(eq=False)
class _Slot:
    """One actor as this process sees it: `up` once it answered and until a call to it
    fails; while not up, `ping` (an `info` call) is in flight and answers once it is back."""

    handle: Any
    name: str
    up: bool = False
    gone: bool = False  # dead for good: Ray restarts it no more
    lost_at: float | None = None  # when this outage began (None: no call to it failed)
    node: str = ""  # the node it was last seen on
    info: tuple[BackboneInfo, WorkerInfo] | None = None
    ping: Any = None
    next_ping: float = 0.0


class RayExtractor:
    """The `Extractor` of the seam over a pool of named, detached backbone actors.
    `restart_wait_s`: with no actor up, how long a step waits for a lost one to be back
    before it fails (a lost node, and no room for its actors elsewhere)."""

    def __init__(
        self, settings: ExecutorSettings, spec: BackboneSpec, restart_wait_s: float = RESTART_WAIT_S
    ):
        self.settings, self.spec, self.restart_wait_s = settings, spec, restart_wait_s
        self.address: str | None = None
        self._slots: list[_Slot] | None = None

    # ---- the pool -----------------------------------------------------------------------

    def actors(self) -> list:
        """The pool's actor handles: found by name if they exist, else started."""
        return [s.handle for s in self.slots()]

    def slots(self) -> list[_Slot]:
        if self._slots is None:
            self._slots = [_Slot(handle, name) for name, handle in self._start()]
        return self._slots

    def _start(self) -> list[tuple[str, Any]]:
        import ray

        self.address = connect(self.settings.address())
        gpus, cpus, count = self._shape(ray.cluster_resources())
        retries = self.settings.max_retries
        shape = digest(*asdict(self.spec).values(), gpus, cpus, retries, POOL_VERSION)
        prefix = f"{ACTOR_PREFIX}{shape}-"
        _retire_pools(keep=prefix)
        options = dict(
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=retries,
            max_task_retries=0,  # `run` retries a chunk, on whichever actor is up
            scheduling_strategy="SPREAD",  # a lost node takes as few actors as it can
            num_cpus=cpus,
            num_gpus=gpus,
        )
        threads, cls = max(1, int(cpus)), _actor_class()
        names = [f"{prefix}{i}" for i in range(count)]
        return [(n, cls.options(name=n, **options).remote(self.spec, threads)) for n in names]

    def _shape(self, resources: dict) -> tuple[float, float, int]:
        """(GPUs and CPUs per actor, number of actors) for this cluster."""
        s = self.settings
        cluster_gpus = resources.get("GPU", 0.0)
        gpus = float(s.gpus_per_actor if s.gpus_per_actor is not None else bool(cluster_gpus))
        count = s.actors
        if count == 0:
            by_gpu = int(cluster_gpus // gpus) if gpus else 0
            count = by_gpu or int(resources.get("CPU", 1.0) // max(s.cpus_per_actor, 1.0))
        return gpus, float(s.cpus_per_actor), max(1, count)

    def workers(self) -> list[WorkerInfo]:
        """Each actor's process, node, model loads and chunks done (loads: 1 unless
        restarted), of the actors up within `restart_wait_s`: one that Ray cannot place
        anywhere (its node lost, no room left) is left out, not waited for longer."""
        import ray
        from ray.exceptions import RayActorError

        refs = {s.handle.info.remote(): s for s in self._join(self.restart_wait_s, lost_too=True)}
        out = {}
        for ref, slot in refs.items():
            with contextlib.suppress(RayActorError):  # lost since it answered
                slot.info = ray.get(ref)
                out[slot.name] = slot.info[1]
        return [out[s.name] for s in self.slots() if s.name in out]

    def backbone(self) -> BackboneInfo:
        """The backbone as the actors loaded it (waits for the first to be up)."""
        infos = {s.info[0] for s in self._join(JOIN_GRACE_S) if s.info is not None}
        if len(infos) != 1:
            names = sorted(map(str, infos))
            raise ExecutorError(f"the Ray actors loaded different backbones: {names}")
        return infos.pop()

    def prepare(self, storage: Storage, settings: NagSettings) -> None:
        """What the step reads that only a backbone can make: the normalized baseline."""
        if settings.impact == "normalized":
            actor = self._join(JOIN_GRACE_S)[0].handle
            self._get(actor.impact_baseline.remote(storage.root, storage.options, settings))

    # ---- who is up ----------------------------------------------------------------------

    def _join(self, grace: float, lost_too: bool = False) -> list[_Slot]:
        """The actors up: waits for the first one (a new pool loads the model), then up to
        `grace` seconds for the others still starting (and, `lost_too`, for those being
        restarted); one not up by then joins a step later, when it answers."""
        first = None
        while True:
            now = time.monotonic()
            if first is None and any(s.up for s in self.slots()):
                first = now
            pending = self._pings()
            waiting = [s for s in self.slots() if not (s.up or s.gone)]
            if not lost_too:
                waiting = [s for s in waiting if s.lost_at is None]
            if first is not None and (not waiting or now - first >= grace):
                return [s for s in self.slots() if s.up]
            self._check_stalled(None)
            left = POLL_S if first is None else max(0.0, first + grace - now)
            self._wait(pending, min(POLL_S, left))

    def _wait(self, refs: list, timeout: float) -> list:
        """ray.wait for the first of `refs` (pings are settled here); the ready ones."""
        import ray

        if not refs:
            time.sleep(min(timeout, PING_EVERY_S))
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        pings = {s.ping: s for s in self.slots() if s.ping is not None}
        for ref in ready:
            if ref in pings:
                self._answered(pings[ref], ref)
        return ready

    def _pings(self) -> list:
        """An `info` call in flight to each actor that is not up (one each, not too often):
        it answers once Ray has the actor (back) up."""
        now = time.monotonic()
        for s in self.slots():
            if not (s.up or s.gone or s.ping is not None) and now >= s.next_ping:
                s.ping, s.next_ping = s.handle.info.remote(), now + PING_EVERY_S
        return [s.ping for s in self.slots() if s.ping is not None]

    def _answered(self, slot: _Slot, ref) -> None:
        """A ping came back: the actor is up (again); or it is restarting, or dead for good
        (Ray released its name), or the cluster is gone."""
        import ray
        from ray import exceptions as rx

        slot.ping = None
        try:
            slot.info = ray.get(ref)
        except rx.RayActorError as e:  # a restarting actor fails calls at once
            self._check_cluster(e, None)
            slot.lost_at = slot.lost_at or time.monotonic()
            slot.gone = _dead_for_good(slot.name)
            return
        except Exception as e:
            self._raise(e, None)
        if slot.lost_at is not None:
            log.warning("Ray worker %s is back, on %s", slot.name, _node_text(slot.info[1].node_id))
        slot.up, slot.lost_at, slot.node = True, None, slot.info[1].node_id

    def _lose(self, slot: _Slot, error: Exception, chunk: ChunkRef) -> None:
        """A call to `slot` failed: it is down (its chunks go to the others) until a ping
        answers. A cluster out of reach is the cluster's error, not the actor's."""
        self._check_cluster(error, chunk)
        if slot.up or slot.lost_at is None:
            slot.up, slot.lost_at = False, time.monotonic()
            log.warning(
                "%s: Ray worker %s on %s failed (%s); its chunks go to the workers that are "
                "up, and it rejoins once Ray has restarted it (max_retries=%d)",
                _where(chunk),
                slot.name,
                _node_text(slot.node),
                _first_line(error),
                self.settings.max_retries,
            )

    def _check_stalled(self, chunk: ChunkRef | None) -> None:
        """Raise when no actor is up and none is worth waiting for: all dead for good, or
        the lost ones not back within `restart_wait_s` (no room for them, or too slow). A
        new actor not up yet (loading the model) is waited for, as Ray does."""
        slots = self.slots()
        live = [s for s in slots if not s.gone]
        if any(s.up for s in live) or any(s.lost_at is None for s in live):
            return
        r = self.settings.max_retries
        if not live:
            who = "its Ray worker" if len(slots) == 1 else "its Ray workers all"
            raise ExecutorError(
                f"{_where(chunk)}: {who} died {r + 1} times (max_retries={r}) and Ray "
                "restarts them no more; nothing was written for this file, the others are "
                "not affected"
            )
        waited = time.monotonic() - max(s.lost_at or 0.0 for s in live)
        if waited >= self.restart_wait_s:
            self._check_cluster(None, chunk)
            raise ExecutorError(
                f"{_where(chunk)}: no Ray worker is up: {_lost_text(live)} "
                f"not back within {self.restart_wait_s:g} s ({self._room()}); nothing was "
                "written for this file, a rerun redoes it once the cluster has room again"
            )

    def _room(self) -> str:
        """What an actor needs and what the cluster has free: why a lost one is not back."""
        import ray

        gpus, cpus, _ = self._shape(ray.cluster_resources())
        free = ray.available_resources()
        need = f"an actor needs {cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus else "")
        have = f"{free.get('CPU', 0.0):g} CPU" + (f", {free.get('GPU', 0.0):g} GPU" if gpus else "")
        return f"{need}; the cluster's nodes alive have {have} free"

    def _check_cluster(self, error: Exception | None, chunk: ChunkRef | None) -> None:
        """An actor error while the cluster itself is out of reach is the cluster's."""
        if self.address is None:
            return
        try:
            _check_reachable(self.address)
        except OSError as e:
            disconnect()
            raise ExecutorError(self._gone_text(error or e, chunk)) from error or e

    def _gone_text(self, e: BaseException, chunk: ChunkRef | None) -> str:
        return (
            f"{_where(chunk)}: the Ray cluster at {self.address!r} went away or is out of reach "
            f"({type(e).__name__}: {_first_line(e)}); nothing was written for this file, "
            "and a rerun once the cluster is back redoes only what is missing"
        )

    # ---- the seam -----------------------------------------------------------------------

    def run(
        self, job: NagJob, plan: FilePlan, progress: Progress | None = None
    ) -> Iterator[ChunkNags]:
        """The plan's chunks over the actors up, least busy first, yielded in chunk order."""
        import ray

        shard = _Shard(self, list(plan.chunks), ray.put(job))
        texts = tokens = 0
        try:
            for result in shard.results():
                texts += result.table.num_rows
                tokens += int(result.table["nag_tokens"].to_numpy().sum())
                if progress:
                    progress(texts, plan.rows, tokens)
                yield result
        finally:
            _cancel(shard.inflight)  # the step stopped early (bad input, error): drop the rest

    def _get(self, ref: Any, chunk: ChunkRef | None = None) -> Any:
        """ray.get, with Ray's errors turned into messages naming the cluster and chunk."""
        import ray

        try:
            return ray.get(ref)
        except Exception as e:
            self._raise(e, chunk)

    def _raise(self, e: Exception, chunk: ChunkRef | None) -> NoReturn:
        """Raise `e` as the step should see it: an error of the work itself (a bad row) as
        it is, as in-process; Ray's own errors as messages naming the cluster and chunk."""
        from ray import exceptions as rx

        where = _where(chunk)
        if isinstance(e, rx.RayTaskError):
            if isinstance(e.cause, (InputError, ValueError)):
                raise e.cause from None
            raise ExecutorError(f"{where}: failed on its Ray worker: {e.cause!r}") from e
        if isinstance(e, rx.RayActorError):
            r = self.settings.max_retries
            raise ExecutorError(
                f"{where}: its Ray worker died {r + 1} times (max_retries={r}); nothing was "
                f"written for this file, the others are not affected: {_first_line(e)}"
            ) from e
        if isinstance(e, rx.RayError):
            disconnect()
            raise ExecutorError(self._gone_text(e, chunk)) from e
        raise e


class _Shard:
    """One file's chunks over the pool: at most IN_FLIGHT_PER_ACTOR per actor that is up,
    results in chunk order; a failed actor's chunks go back to the queue, for any actor up
    (the one restarted, or the others), so a lost node costs only its chunks' work."""

    def __init__(self, ex: RayExtractor, chunks: list[ChunkRef], job_ref: Any):
        self.ex, self.chunks, self.job = ex, chunks, job_ref
        self.todo = list(range(len(chunks)))  # a heap: the earliest chunk is sent first
        self.inflight: dict = {}  # object ref -> (chunk index, slot)
        self.tries = [0] * len(chunks)  # how often a chunk's actor failed while it was there
        self.done: dict[int, ChunkNags] = {}
        self.given = 0

    def results(self) -> Iterator[ChunkNags]:
        while self.given < len(self.chunks):
            self._send()
            ready = self.ex._wait([*self.inflight, *self.ex._pings()], POLL_S)
            for ref in ready:
                if ref in self.inflight:
                    self._collect(ref)
            self.ex._check_stalled(self.chunks[self.given])
            while self.given in self.done:
                self.given += 1
                yield self.done.pop(self.given - 1)

    def _send(self) -> None:
        """Chunks to the least busy actors up; never more than the window past the first
        chunk not yet given, so results waiting for an earlier one stay bounded."""
        window = IN_FLIGHT_PER_ACTOR * len(self.ex.slots())
        busy = {s: 0 for s in self.ex.slots() if s.up}
        for _, slot in self.inflight.values():
            if slot in busy:
                busy[slot] += 1
        while busy and self.todo and self.todo[0] < self.given + window:
            slot = min(busy, key=busy.__getitem__)
            if busy[slot] >= IN_FLIGHT_PER_ACTOR:
                return
            i = heapq.heappop(self.todo)
            self.inflight[slot.handle.extract.remote(self.chunks[i], self.job)] = (i, slot)
            busy[slot] += 1

    def _collect(self, ref) -> None:
        import ray
        from ray import exceptions as rx

        i, slot = self.inflight.pop(ref)
        try:
            self.done[i] = ray.get(ref)
        except rx.RayActorError as e:
            self.ex._lose(slot, e, self.chunks[i])
            self.tries[i] += 1
            if self.tries[i] > self.ex.settings.max_retries:
                self.ex._raise(e, self.chunks[i])
            heapq.heappush(self.todo, i)
        except Exception as e:
            self.ex._raise(e, self.chunks[i])


def stop_pool() -> list[str]:
    """Kill every backbone actor in the namespace (frees their devices); their names."""
    return _retire_pools(keep=None)


def _retire_pools(keep: str | None) -> list[str]:
    """Kill the namespace's backbone actors whose names do not start with `keep`."""
    import ray

    gone = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] != NAMESPACE or not name.startswith(ACTOR_PREFIX):
            continue
        if keep is None or not name.startswith(keep):
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
                gone.append(name)
            except ValueError:  # gone meanwhile
                pass
    return gone


def _dead_for_good(name: str) -> bool:
    """Ray releases a detached actor's name once it restarts it no more."""
    import ray

    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return True
    return False


def _node_text(node_id: str) -> str:
    """A node as messages name it: its id, address and whether Ray still counts it alive."""
    import ray

    if not node_id:
        return "a node not known yet"
    with contextlib.suppress(Exception):
        for n in ray.nodes():
            if n["NodeID"] == node_id:
                alive = "alive" if n["Alive"] else "dead"
                return f"node {node_id} ({n['NodeManagerAddress']}, {alive})"
    return f"node {node_id}"


def _lost_text(slots: list[_Slot]) -> str:
    return "; ".join(f"{s.name}, last on {_node_text(s.node)}," for s in slots)


def _cancel(refs) -> None:
    import ray

    for ref in refs:
        with contextlib.suppress(Exception):  # already done, or the cluster is gone
            ray.cancel(ref)


def _where(chunk: ChunkRef | None) -> str:
    if chunk is None:
        return "the backbone actors"
    rows = f"rows {chunk.first_row}-{chunk.first_row + chunk.rows - 1}"
    return f"{chunk.name} (partition {chunk.key}), chunk {chunk.index}, {rows}"


_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(NagWorker)
    return _ACTOR_CLASS


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]
