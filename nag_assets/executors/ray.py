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
- A worker that dies is restarted and its chunks retried (`max_retries`: Ray's actor
  restarts and task retries); when the retries run out the file fails alone with an
  `ExecutorError` naming it and the chunk; nothing is written. A cluster that goes away gives
  an `ExecutorError` naming it; a rerun redoes only the files whose output is missing.
- Actors of another backbone spec in the namespace are retired when a pool is made, so a
  changed model never leaves old actors holding the devices.

Ray is imported only here, and only when used: the package works without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from nag_assets.executors import ExecutorError, ExecutorSettings
from nag_assets.pipeline.common import NagSettings, Progress
from nag_assets.pipeline.extractor import BackboneSpec, ChunkNags, NagJob, extract_chunk
from nag_assets.sources.chunks import ChunkRef, FilePlan
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, digest

NAMESPACE = "nag_assets"
ACTOR_PREFIX = "nag-worker-"
IN_FLIGHT_PER_ACTOR = 2  # one computing, one queued: no actor waits on the driver


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
    """One actor: its process, how often it loaded the model, how many chunks it did."""

    name: str
    pid: int
    loads: int
    chunks: int
    device: str
    gpu_ids: tuple
    restarted: bool


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


class RayExtractor:
    """The `Extractor` of the seam over a pool of named, detached backbone actors."""

    def __init__(self, settings: ExecutorSettings, spec: BackboneSpec):
        self.settings, self.spec = settings, spec
        self.address: str | None = None
        self._actors: list | None = None

    # ---- the pool -----------------------------------------------------------------------

    def actors(self) -> list:
        """The pool's actor handles: found by name if they exist, else started."""
        if self._actors is None:
            self._actors = self._start()
        return self._actors

    def _start(self) -> list:
        import ray

        self.address = connect(self.settings.address())
        gpus, cpus, count = self._shape(ray.cluster_resources())
        retries = self.settings.max_retries
        shape = digest(*asdict(self.spec).values(), gpus, cpus, retries)
        prefix = f"{ACTOR_PREFIX}{shape}-"
        _retire_pools(keep=prefix)
        options = dict(
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=retries,
            max_task_retries=retries,
            num_cpus=cpus,
            num_gpus=gpus,
        )
        threads = max(1, int(cpus))
        return [
            _actor_class().options(name=f"{prefix}{i}", **options).remote(self.spec, threads)
            for i in range(count)
        ]

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
        """Each actor's process, model loads and chunks done (loads: 1 unless restarted)."""
        return [w for _, w in self._call_all("info")]

    def backbone(self) -> BackboneInfo:
        """The backbone as the actors loaded it (waits for them to be up)."""
        infos = {b for b, _ in self._call_all("info")}
        if len(infos) != 1:
            raise ExecutorError(f"the Ray actors loaded different backbones: {sorted(infos)}")
        return infos.pop()

    def prepare(self, storage: Storage, settings: NagSettings) -> None:
        """What the step reads that only a backbone can make: the normalized baseline."""
        if settings.impact == "normalized":
            actor = self.actors()[0]
            self._get(actor.impact_baseline.remote(storage.root, storage.options, settings))

    def _call_all(self, method: str) -> list:
        refs = [getattr(a, method).remote() for a in self.actors()]
        return [self._get(r) for r in refs]

    # ---- the seam -----------------------------------------------------------------------

    def run(
        self, job: NagJob, plan: FilePlan, progress: Progress | None = None
    ) -> Iterator[ChunkNags]:
        """The plan's chunks over the pool, least busy actor first, yielded in chunk order."""
        import ray

        actors, chunks = self.actors(), plan.chunks
        job_ref = ray.put(job)
        window = IN_FLIGHT_PER_ACTOR * len(actors)
        inflight: dict = {}  # object ref -> (chunk index, actor index)
        busy, done = [0] * len(actors), {}
        sent = given = texts = tokens = 0
        try:
            while given < len(chunks):
                while sent < len(chunks) and sent - given < window:
                    a = busy.index(min(busy))
                    inflight[actors[a].extract.remote(chunks[sent], job_ref)] = (sent, a)
                    busy[a] += 1
                    sent += 1
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    i, a = inflight.pop(ref)
                    busy[a] -= 1
                    done[i] = self._get(ref, chunks[i])
                while given in done:
                    result = done.pop(given)
                    given += 1
                    texts += result.table.num_rows
                    tokens += int(result.table["nag_tokens"].to_numpy().sum())
                    if progress:
                        progress(texts, plan.rows, tokens)
                    yield result
        finally:
            _cancel(inflight)  # the step stopped early (bad input, error): drop the rest

    def _get(self, ref, chunk: ChunkRef | None = None):
        """ray.get, with Ray's errors turned into messages naming the cluster and chunk;
        an error of the work itself (a bad row) is raised as it is, as in-process."""
        import ray
        from ray import exceptions as rx

        where = _where(chunk)
        try:
            return ray.get(ref)
        except rx.RayTaskError as e:
            if isinstance(e.cause, (InputError, ValueError)):
                raise e.cause from None
            raise ExecutorError(f"{where}: failed on its Ray worker: {e.cause!r}") from e
        except rx.ActorDiedError as e:
            raise ExecutorError(
                f"{where}: its Ray worker died {self.settings.max_retries + 1} times "
                f"(max_retries={self.settings.max_retries}); nothing was written for this "
                f"file, the others are not affected: {_first_line(e)}"
            ) from e
        except rx.RayError as e:
            disconnect()
            raise ExecutorError(
                f"{where}: the Ray cluster at {self.address!r} went away or is out of reach "
                f"({type(e).__name__}: {_first_line(e)}); nothing was written for this file, "
                "and a rerun once the cluster is back redoes only what is missing"
            ) from e


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
