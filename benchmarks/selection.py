"""Selection under a token budget from a sharded pool: time and peak memory as it grows.

Prints one JSON object. For each pool size, synthetic scored shards (--shard-docs documents
each: float32 scores around real ones, token counts, string ids "sNNNNN/NNNNNNNN") are made
on the fly from their seed inside `batches()`, so no shard outlives its turn, exactly as
the mixture step reads shards from storage. The library's streaming selection runs as that
step does: `find_cutoffs` (two passes) then `keep_mask` per shard (a third pass). Reported:
seconds, wall and CPU (making the synthetic shards excluded), documents/s, and peak
resident memory, in all and above the process's size before the pool (flat as it grows).
Beside it, up to --global-max documents, what one would write instead: the whole pool in
memory and a global sort (np.lexsort by score desc, id asc) per target; both must agree.

    python benchmarks/selection.py [--sizes 10000000,100000000] [--targets 2] [--quick]
"""

from __future__ import annotations

import argparse
import time

import _bench
import numpy as np

from nag_assets.nag.select import ScoredBatch, find_cutoffs, keep_mask, target_budgets

ROW_DIGITS = 8


class Pool:
    """A synthetic sharded pool whose shards are made from their seed on each read."""

    def __init__(self, docs: int, shard_docs: int, n_targets: int):
        self.docs, self.shard_docs, self.n_targets = docs, shard_docs, n_targets
        self.shards = -(-docs // shard_docs)
        self.making_s = self.making_cpu_s = 0.0  # time spent making shards, not selecting
        rows = np.arange(shard_docs)[:, None] // 10 ** np.arange(ROW_DIGITS - 1, -1, -1)
        self._row_codes = (rows % 10 + ord("0")).astype(np.uint32)

    def shard(self, i: int) -> ScoredBatch:
        start, cpu = time.perf_counter(), time.process_time()
        n = min(self.shard_docs, self.docs - i * self.shard_docs)
        rng = np.random.default_rng(i)
        centre = np.linspace(0.25, 0.35, self.n_targets, dtype=np.float32)
        scores = rng.normal(centre, 0.08, (n, self.n_targets)).astype(np.float32)
        np.clip(scores, 0, 1, out=scores)
        tokens = rng.integers(-20, 400, n)  # some <= 0: empty texts, never selected
        head = f"s{i:05d}/"
        codes = np.empty((n, len(head) + ROW_DIGITS), dtype=np.uint32)
        codes[:, : len(head)] = [ord(c) for c in head]
        codes[:, len(head) :] = self._row_codes[:n]
        ids = codes.view(f"<U{codes.shape[1]}")[:, 0]
        self.making_s += time.perf_counter() - start
        self.making_cpu_s += time.process_time() - cpu
        return ScoredBatch(scores, tokens, ids)

    def batches(self):
        for i in range(self.shards):
            yield self.shard(i)


def streaming(pool: Pool, targets: list[str], fraction: float) -> dict:
    cutoffs = find_cutoffs(pool.batches, targets, fraction)
    kept = np.zeros(len(targets), dtype=np.int64)
    tokens = np.zeros(len(targets), dtype=np.int64)
    for b in pool.batches():
        mask = keep_mask(b, cutoffs)
        kept += mask.sum(axis=0)
        tokens += (mask * np.maximum(b.tokens, 0)[:, None]).sum(axis=0)
    assert [c.documents for c in cutoffs] == kept.tolist()
    assert [c.tokens for c in cutoffs] == tokens.tolist()
    return {"documents": kept.tolist(), "tokens": tokens.tolist()}


def global_sort(pool: Pool, targets: list[str], fraction: float) -> dict:
    """The whole pool in memory, one lexsort per target."""
    shards = list(pool.batches())
    scores = np.concatenate([b.scores for b in shards])
    tokens = np.maximum(np.concatenate([b.tokens for b in shards]), 0)
    ids = np.concatenate([b.doc_ids for b in shards])
    del shards
    budgets = target_budgets(int(tokens.sum()), targets, fraction)
    usable = tokens > 0
    kept, spent = [], []
    for t, name in enumerate(targets):
        order = np.lexsort((ids, -scores[:, t].astype(np.float64)))
        order = order[usable[order]]
        total = np.cumsum(tokens[order])
        n = int(np.searchsorted(total, budgets[name], side="right"))
        kept.append(n)
        spent.append(int(total[n - 1]) if n else 0)
    return {"documents": kept, "tokens": spent}


def measure(fn, pool: Pool, targets: list[str], fraction: float) -> tuple[dict, dict]:
    pool.making_s = pool.making_cpu_s = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    with _bench.PeakRSS(every=0.005) as mem:
        result = fn(pool, targets, fraction)
    seconds = time.perf_counter() - start - pool.making_s
    cpu_seconds = time.process_time() - cpu - pool.making_cpu_s
    return result, {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "docs_per_s": round(pool.docs / seconds),
        "making_shards_s": round(pool.making_s, 2),
        "peak_rss_mib": _bench.mib(mem.peak),
        "peak_extra_mib": _bench.mib(mem.extra),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000000,100000000", help="pool sizes, documents")
    p.add_argument("--shard-docs", type=int, default=1_000_000)
    p.add_argument("--targets", type=int, default=2)
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--global-max", type=int, default=10_000_000, help="largest global sort")
    p.add_argument("--quick", action="store_true", help="100k and 400k documents")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.shard_docs = "100000,400000", 50_000
    started = time.perf_counter()
    targets = [f"target_{i}" for i in range(args.targets)]
    sizes = {}
    for docs in (int(x) for x in args.sizes.split(",")):
        pool = Pool(docs, args.shard_docs, args.targets)
        kept, row = measure(streaming, pool, targets, args.fraction)
        row.update(shards=pool.shards, kept_documents=kept["documents"])
        if docs <= args.global_max:
            reference, row["global_sort"] = measure(global_sort, pool, targets, args.fraction)
            row["matches_global_sort"] = reference == kept
        sizes[str(docs)] = row
    return _bench.emit(
        {
            "benchmark": "selection",
            "targets": args.targets,
            "shard_docs": args.shard_docs,
            "fraction": args.fraction,
            "sizes": sizes,
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()
