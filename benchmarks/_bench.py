"""What the benchmark scripts share: machine facts, interleaved timing, peak memory, JSON out.

Timing on a shared machine: every compared method runs on the same inputs, in the same
process, interleaved piece by piece and round by round (the order rotates each round), and
each piece keeps its fastest round. A burst of load from elsewhere then slows one round of
one piece, not one method, and ratios stay honest even when absolute rates wander.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # nag_assets_tests.tiny, when run as `python benchmarks/x.py`
    sys.path.insert(0, str(REPO))


def machine() -> dict:
    """Where the figures come from."""
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(load[0], 2) if load else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def emit(result: dict) -> dict:
    """Print the one JSON object a benchmark reports, and hand it back (for the smoke tests)."""
    print(json.dumps(result), flush=True)
    return result


def interleaved(
    methods: dict[str, Callable[[object], object]],
    pieces: Sequence[object],
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Seconds per method: the sum over pieces of each piece's fastest round."""
    best = {m: [float("inf")] * len(pieces) for m in methods}
    names = list(methods)
    for r in range(rounds):
        for i, piece in enumerate(pieces):
            shift = (r + i) % len(names)
            for name in names[shift:] + names[:shift]:
                start = clock()
                methods[name](piece)
                best[name][i] = min(best[name][i], clock() - start)
    return {m: sum(v) for m, v in best.items()}


def add_clock_option(parser) -> None:
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu (default): one torch thread, timed by that thread's CPU seconds, which "
        "other processes on a shared machine barely disturb: rates per core; wall: "
        "wall-clock seconds with torch's own thread count (use on a dedicated machine)",
    )


@contextlib.contextmanager
def clock_for(name: str):
    """The timer for --clock; `cpu` pins torch to one thread (this one) until the block ends."""
    import torch

    threads = torch.get_num_threads()
    if name == "cpu":
        torch.set_num_threads(1)
    try:
        yield time.thread_time if name == "cpu" else time.perf_counter
    finally:
        torch.set_num_threads(threads)


def rss() -> int:
    """Resident set size of this process, bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory while the block runs, sampled every `every` seconds (torch's
    allocations included, which tracemalloc does not see)."""

    def __init__(self, every: float = 0.002):
        self.every = every
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        _release_free_memory()
        self.start = self.peak = rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.every)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self) -> int:
        """Bytes above what the process held when the block started."""
        return self.peak - self.start


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so that memory a block reuses from
    earlier work still shows as growth."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


@functools.cache
def tiny_model_dir() -> str:
    """A tiny random Llama saved to a temporary folder: quick modes load it like a real one."""
    from nag_assets_tests.tiny import save_tiny

    folder = Path(tempfile.mkdtemp(prefix="nag-bench-tiny-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(save_tiny(folder))


class BackboneMeter:
    """Counts what reaches the backbone while the graph runs in this process: texts and
    tokens handed to NAG extraction, forward passes (one per batch), and the seconds spent
    in extraction (tokenizing included), by wrapping `nag_assets.pipeline.common.extract_nags`
    (what every step calls) and `nag_assets.nag.extract._batch_impact` (one forward pass)."""

    def __init__(self):
        self.texts = self.tokens = self.forwards = self.calls = 0
        self.seconds = 0.0

    def __enter__(self) -> BackboneMeter:
        import nag_assets.nag.extract as extract
        import nag_assets.pipeline.common as common

        self._patched = [
            (common, "extract_nags", common.extract_nags),
            (extract, "_batch_impact", extract._batch_impact),
        ]
        inner_extract, inner_batch = common.extract_nags, extract._batch_impact

        def extract_nags(backbone, texts, *args, **kwargs):
            start = time.perf_counter()
            try:
                nags, used = inner_extract(backbone, texts, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
            self.calls += 1
            self.texts += len(texts)
            self.tokens += int(used.sum())
            return nags, used

        def batch_nags(*args, **kwargs):
            self.forwards += 1
            return inner_batch(*args, **kwargs)

        common.extract_nags, extract._batch_impact = extract_nags, batch_nags
        return self

    def __exit__(self, *exc) -> None:
        for module, name, original in self._patched:
            setattr(module, name, original)

    def snapshot(self) -> dict:
        return {
            "texts": self.texts,
            "tokens": self.tokens,
            "forward_passes": self.forwards,
            "extract_calls": self.calls,
            "backbone_s": self.seconds,
        }


def dagster_instance(folder: str, in_memory: bool):
    """A fresh Dagster instance: in memory (quick, for smoke tests), or SQLite under
    `folder` like the demo's `.dagster_home` (what the real figures pay for)."""
    import dagster as dg

    if in_memory:
        return dg.DagsterInstance.ephemeral()
    home = Path(folder) / "dagster"
    home.mkdir(exist_ok=True)
    return dg.DagsterInstance.local_temp(str(home))


def quiet_dagster() -> None:
    """The demo's warning filters: Dagster's beta/preview notices are noise here."""
    import warnings

    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def graph_args(description: str, argv, docs: int, shards: int, examples: int):
    """The options of the benchmarks that run the demo graph; --quick shrinks them."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--docs", type=int, default=docs)
    p.add_argument("--shards", type=int, default=shards)
    p.add_argument("--examples", type=int, default=examples)
    p.add_argument("--model", default="embedded")
    p.add_argument("--quick", action="store_true", help="tiny model, a few texts")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.shards, args.examples = 20, 2, 6
        args.model = tiny_model_dir()
    return args


@contextlib.contextmanager
def demo_graph(args, prefix: str):
    """A demo root in a temporary folder, its Definitions, and the backbone loaded before
    any clock starts: yields (tmp folder, root, defs, model load seconds)."""
    import tempfile
    from pathlib import Path

    quiet_dagster()
    from nag_assets.definitions import build_defs
    from nag_assets.defs.resources import BackboneResource, StorageResource
    from nag_assets.demo import build_demo_root

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp) / "root"
        build_demo_root(root, args.docs, args.shards, args.examples)
        backbone = BackboneResource(model=args.model)
        start = time.perf_counter()
        backbone.load()
        load_s = time.perf_counter() - start
        yield tmp, root, build_defs(StorageResource(root=str(root)), backbone), load_s


QWEN3_1_7B = dict(  # Qwen/Qwen3-1.7B config.json, the shapes that set the cost
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
)


def vmhwm() -> int:
    """Peak resident memory of this process so far, bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")
