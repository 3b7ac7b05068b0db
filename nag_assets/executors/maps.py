"""Running one function over many items where the executor in force says: threads in this
process (`local`), or one Ray task per item on the cluster (`ray`). The corpus copy goes
through here: a shard's part is independent of every other's."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nag_assets.settings import ExecutorSettings

Map = Callable[[Callable[[Any], Any], list[Any]], Iterable[Any]]


def local_workers(workers: int | None) -> int:
    """`workers`, or by default this machine's cores (at most 8): reading, filtering and
    compressing parquet releases the GIL, so threads scale with the cores."""
    return workers or min(8, os.cpu_count() or 1)


def executor_map(settings: ExecutorSettings, workers: int | None = None) -> Map:
    """A map over the executor in force, results in the items' order."""
    if settings.executor == "ray":
        return _ray_map(settings)
    threads = local_workers(workers)

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(fn, items))

    return run


def _ray_map(settings: ExecutorSettings) -> Map:
    import ray

    from nag_assets.executors.ray import connect

    connect(settings.address())
    # No CPU reserved: the backbone actors may hold every CPU of the cluster, and a copy task
    # that waits for one would wait forever. The copy is mostly I/O and (de)compression.
    task = ray.remote(num_cpus=0, max_retries=settings.max_retries)(_call)

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return ray.get([task.remote(fn, item) for item in items])

    return run


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)
