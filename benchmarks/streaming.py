"""shard_nag on one shard of 10k, 100k and 1M short documents: peak memory and time.

Prints one JSON object with a row per size. Each size runs in a fresh Python process that
loads the backbone, runs `pipeline.shards.shard_nag` once over a parquet shard made
beforehand (by this parent process, so making it costs the child nothing), and reads its own
peak resident memory (VmHWM in /proc/self/status) at the end, and VmHWM before the step (the
process, torch and the model). In the same run it times where the step goes: parsing
(planning and reading the chunks, checking the rows), tokenization (every `tokenize` call:
the NAG's truncated ids and the full-text token counts for the budget) and the rest
(forward passes, top-K, writing). `padding` is positions computed per real token, with
length sorting within each chunk (what the step does) and over the whole shard (what a
shard held whole in memory would give).

    python benchmarks/streaming.py [--docs 10000,100000,1000000] [--model tiny|embedded|PATH]
        [--chunk-rows 4096] [--batch-size 32] [--max-tokens 120] [--quick]

--quick: 500 and 1,500 documents with the tiny model (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench

# made-up words of one or two syllables: a few tokens each, as real words are
SYLLABLES = [c + v for c in "bcdfglmnprstv" for v in ("a", "e", "i", "o", "u", "an", "er")]
WORDS = SYLLABLES + [a + b for a in SYLLABLES[::7] for b in SYLLABLES[::5]]


def make_shard(folder: Path, n: int, seed: int = 0) -> Path:
    """n short documents (3-12 words), ids "d<i>", in one parquet file written by polars."""
    import polars as pl

    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(n)]
    path = folder / "shards" / f"s{n}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": [f"d{i}" for i in range(n)], "text": texts}).write_parquet(path)
    return path


def child(
    root: str, key: str, model: str, chunk_rows: int, batch_size: int, max_tokens: int
) -> dict:
    """One measured run (in its own process): shard_nag over shards/<key>.parquet."""
    import torch

    import nag_assets.sources.chunks as chunks
    import nag_assets.sources.files as files
    from nag_assets.nag import Backbone, load_backbone
    from nag_assets.pipeline import extractor
    from nag_assets.pipeline.common import NagSettings
    from nag_assets.pipeline.shards import shard_nag
    from nag_assets.storage import Storage

    torch.set_num_threads(1)
    backbone = load_backbone(model)
    backbone.tokenize(["warm up"])
    before = _bench.vmhwm()
    spent = {"tokenize": 0.0, "parse": 0.0}

    def timed(what, f):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[what] += time.perf_counter() - start

        return run

    Backbone.tokenize = timed("tokenize", Backbone.tokenize)
    chunks.plan_file = timed("parse", chunks.plan_file)
    extractor.normalize = timed("parse", files.normalize)
    frames = extractor.iter_frames

    def timed_frames(plan):
        it = frames(plan)
        while True:
            start = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            finally:
                spent["parse"] += time.perf_counter() - start
            yield frame

    extractor.iter_frames = timed_frames
    import nag_assets.pipeline.shards as shards_module

    shards_module.plan_file = chunks.plan_file
    settings = NagSettings(max_tokens=max_tokens, batch_size=batch_size, chunk_rows=chunk_rows)
    start = time.perf_counter()
    step = shard_nag(Storage(root), key, backbone, settings)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak": _bench.vmhwm(),
        "before_step": before,
        "documents": step.facts["documents_extracted"],
        "tokens": step.facts["tokens"],
        "nag_tokens": step.facts["nag_tokens"],
        **spent,
    }


def padding(path: Path, batch_size: int) -> dict:
    """Positions computed per real token: sorted within each chunk (row group) vs whole."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    total = real = 0
    every = []
    for g in range(pf.metadata.num_row_groups):
        lengths = sorted(
            (x for x in pf.read_row_group(g, ["nag_tokens"])["nag_tokens"].to_pylist() if x),
            reverse=True,
        )
        every += lengths
        real += sum(lengths)
        total += sum(
            lengths[i] * len(lengths[i : i + batch_size])
            for i in range(0, len(lengths), batch_size)
        )
    every.sort(reverse=True)
    whole = sum(every[i] * len(every[i : i + batch_size]) for i in range(0, len(every), batch_size))
    return {"chunk_sorted": round(total / real, 4), "shard_sorted": round(whole / real, 4)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", default="10000,100000,1000000")
    p.add_argument("--model", default="tiny", help="tiny (a random tiny Llama), embedded, PATH")
    p.add_argument("--chunk-rows", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # ROOT KEY: run one measurement
    args = p.parse_args(argv)
    model = _bench.tiny_model_dir() if args.model == "tiny" else args.model
    if args.child:
        sizes = (args.chunk_rows, args.batch_size, args.max_tokens)
        print(json.dumps(child(*args.child, model, *sizes)))
        return {}
    if args.quick:
        args.docs = "500,1500"
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nag-stream-") as root:
        for n in map(int, args.docs.split(",")):
            path = make_shard(Path(root), n)
            cmd = [sys.executable, __file__, "--child", root, path.name.split(".")[0]]
            cmd += ["--model", model, "--chunk-rows", str(args.chunk_rows)]
            cmd += ["--batch-size", str(args.batch_size), "--max-tokens", str(args.max_tokens)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            nag = Path(root) / "assets" / "shard_nag" / f"{path.name.split('.')[0]}.parquet"
            rows.append(
                {
                    "docs": r["documents"],
                    "peak_rss_mib": _bench.mib(r["peak"]),
                    "rss_before_step_mib": _bench.mib(r["before_step"]),
                    "seconds": round(r["seconds"], 1),
                    "docs_per_s": round(r["documents"] / r["seconds"], 1),
                    "tokens": r["tokens"],
                    "share_tokenize": round(r["tokenize"] / r["seconds"], 3),
                    "share_parse": round(r["parse"] / r["seconds"], 3),
                    "padding": padding(nag, args.batch_size),
                }
            )
            path.unlink()
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, size by size
    peak = [r["peak_rss_mib"] for r in rows]
    return _bench.emit(
        {
            "benchmark": "streaming",
            "model": "tiny (random Llama)" if args.model == "tiny" else args.model,
            "chunk_rows": args.chunk_rows,
            "batch_size": args.batch_size,
            "max_tokens": args.max_tokens,
            "sizes": rows,
            "peak_largest_vs_second": round(peak[-1] / peak[-2], 3) if len(peak) > 1 else None,
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()
