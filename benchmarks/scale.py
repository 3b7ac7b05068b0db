"""What the pipeline costs after the backbone, at scale: shard_scores, the manifest, the corpus
copy (1, 2, 4 workers) and the graph's check of the corpus on a pool of ~2 KB documents; one
more shard arriving; and the manifest alone on 10^7 rows of scores, extrapolated to 10^8.

Prints one JSON object. Each pool (built once, cached under --workdir) holds parquet shards of
documents made of 4 random Wikipedia leads each (real text, ~2 KB; ids unique across the pool,
the pool sensor's input index written as it would be) and, per shard, a shard_nag table of
random NAGs with the embedded backbone's shape (SmolLM2-135M: 30 layers, top-5, d_ff 1,536)
and the footer shard_nag writes; two targets (target_nag tables of 200 random NAGs, the tuned
preset's layers). The backbone never runs (its cost: benchmarks/README.md); NAG neurons are
skewed towards low indices so that scores spread and the two targets' scores correlate, as
real ones do. Token counts are a document's bytes / 4 (an estimate: only the budget's unit).

Each measured step runs in a fresh Python process, which reports its seconds and its peak
resident memory (VmHWM of /proc/self/status; the memory before the step, after the imports,
beside it):
  shard_scores   pipeline.shards.shard_scores over every shard, one after the other
  manifest       selected_mixture(..., copy=False): the selection from the score tables
  corpus_wN      write_corpus through executor_map with N threads, the part cache emptied
                 first; worker counts run back to back, their order rotating each round, best
                 round kept; the shard files are read once before, so every count finds them
                 in the page cache
  corpus_check   check_mixture: what mixture_corpus checks once the copy is written
  new_shard      one more shard of docs/shards documents: its shard_scores, the manifest,
                 the corpus copy (parts reused vs rewritten), with the largest worker count
manifest_scale: score tables synthesized directly (id, tokens, one float32 column per target;
ShardScoresFooter and target_nag footers as the steps write them) at --manifest-rows / 10 and
--manifest-rows, in shards of --manifest-shard-rows; seconds and peak extrapolated to 10^8.

    python benchmarks/scale.py [--docs 100000 1000000] [--shards 10 1000] [--workers 1 2 4]
        [--manifest-rows 10000000] [--manifest-shard-rows 100000] [--rounds 1]
        [--workdir ~/.cache/nag_assets/scale] [--quick]

--quick: 2,000 documents in 4 shards, 1 and 2 workers, 20,000 rows of scores, in a temporary
folder (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench

SHAPE = {"layers": 30, "top_k": 5, "d_ff": 1536}  # SmolLM2-135M, the embedded backbone
MAX_TOKENS = 120
LEADS_PER_DOC = 4
BYTES_PER_TOKEN = 4
TARGETS = ("arc_easy", "hellaswag")
TARGET_EXAMPLES = 200
SCORED_LAYERS = "from:0.67"  # the tuned preset (the graph's default)
FINGERPRINT = "scale-synthetic-nags"
POOL_FORMAT = "1"  # bump when pools are made differently: cached ones are rebuilt
SPARE = "new-shard"  # the shard that arrives last
PER = 100_000  # figures per 10^5 documents
MANIFEST_TARGET = {"documents": 10**8, "seconds": 120, "gib": 2}
OUTPUTS = ("assets/shard_scores", "mixture_versions", "corpus_parts", "previews")


# ---- making the pool (the parent process, before any clock) ------------------------------


def sizes(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def random_nags(rng, n: int):
    """(n, L, K) int16 NAGs: K distinct neurons per layer, skewed towards low indices."""
    import numpy as np

    layers, k, d_ff = SHAPE["layers"], SHAPE["top_k"], SHAPE["d_ff"]
    base = (d_ff * rng.random((n, layers), dtype=np.float32) ** 3).astype(np.int32)
    steps = np.cumsum(rng.integers(1, 40, (n, layers, k), dtype=np.int32), axis=-1)
    return ((base[..., None] + steps) % d_ff).astype(np.int16)


def nag_frame(ids, tokens, nags):
    """A NAG table with shard_nag's columns: id, tokens, nag_tokens, nag (L*K int16)."""
    import numpy as np
    import polars as pl

    flat = nags.reshape(len(nags), -1)
    return pl.DataFrame(
        {
            "id": ids,
            "tokens": tokens,
            "nag_tokens": np.minimum(tokens, MAX_TOKENS),
            "nag": pl.Series(flat, dtype=pl.Array(pl.Int16, flat.shape[1])),
        }
    )


def nag_footer(version: str, **extra):
    from nag_assets.pipeline.layout import NagFooter

    return NagFooter(
        version, *SHAPE.values(), MAX_TOKENS, "normalized", FINGERPRINT, **extra
    ).to_meta()


def doc_ids(key: str, n: int):
    import polars as pl

    return pl.select(pl.lit(f"{key}/") + pl.int_range(n).cast(pl.Utf8).str.zfill(8)).to_series()


def write_targets(storage, seed: int) -> None:
    import numpy as np

    from nag_assets.nag.layers import parse_layers
    from nag_assets.pipeline.layout import TARGET_NAG, table

    subset = list(parse_layers(SCORED_LAYERS, SHAPE["layers"]))
    for i, t in enumerate(TARGETS):
        rng = np.random.default_rng([seed, 7, i])
        tokens = rng.integers(20, 200, TARGET_EXAMPLES)
        df = nag_frame(doc_ids(t, TARGET_EXAMPLES), tokens, random_nags(rng, TARGET_EXAMPLES))
        meta = nag_footer(f"scale-target-{t}-{seed}", layer_subset=subset)
        storage.write_parquet(df, *table(TARGET_NAG, t), meta=meta)


def documents(leads, key: str, n: int, rng):
    """n documents of LEADS_PER_DOC random leads each."""
    import polars as pl

    picks = rng.integers(0, leads.len(), (n, LEADS_PER_DOC))
    parts = pl.DataFrame({f"p{j}": leads.gather(picks[:, j]) for j in range(LEADS_PER_DOC)})
    text = parts.select(pl.concat_str(pl.all(), separator=" ")).to_series()
    return pl.DataFrame({"id": doc_ids(key, n), "text": text})


def add_shard(storage, key: str, n: int, leads, rng) -> dict:
    """A shard file, its input-index entry and its shard_nag table; returns its sizes."""
    import hashlib

    import numpy as np

    from nag_assets.pipeline.common import record_input
    from nag_assets.pipeline.layout import SHARD_NAG, table

    docs = documents(leads, key, n, rng)
    name = f"{key}.parquet"
    storage.write_parquet(docs, "shards", name)
    sha = hashlib.sha256(Path(storage.path("shards", name)).read_bytes()).hexdigest()[:32]
    record_input(storage, "shards", key, name)
    text_bytes = docs["text"].str.len_bytes().to_numpy()
    tokens = np.maximum(text_bytes // BYTES_PER_TOKEN, 1).astype(np.int64)
    meta = nag_footer(f"scale-{key}-{sha[:16]}", file=name, sha256=sha)
    nags = nag_frame(docs["id"], tokens, random_nags(rng, n))
    storage.write_parquet(nags, *table(SHARD_NAG, key), meta=meta)
    return {"text_bytes": int(text_bytes.sum())}


def build_pool(root: Path, docs: int, shards: int, seed: int) -> dict:
    """The pool under `root`, made once (BUILT.json records it), and its spare shard under
    root/_spare, laid out the same way."""
    import numpy as np

    from nag_assets.sources.wiki import load_wiki_leads
    from nag_assets.storage import Storage

    want = {"format": POOL_FORMAT, "docs": docs, "shards": shards, "seed": seed}
    marker = root / "BUILT.json"
    if marker.exists() and {k: v for k, v in _read(marker).items() if k in want} == want:
        return _read(marker) | {"cached": True}
    shutil.rmtree(root, ignore_errors=True)
    start, leads = time.perf_counter(), load_wiki_leads()["text"]
    storage, text_bytes = Storage(str(root)), 0
    write_targets(storage, seed)
    for i, n in enumerate(sizes(docs, shards)):
        rng = np.random.default_rng([seed, shards, i])
        text_bytes += add_shard(storage, f"s{i:04d}", n, leads, rng)["text_bytes"]
    spare = docs // shards
    add_shard(Storage(str(root / "_spare")), SPARE, spare, leads, np.random.default_rng([seed]))
    built = want | {"spare_docs": spare, "text_bytes": text_bytes}
    built |= {"shard_file_bytes": _bytes(root / "shards"), "build_s": _since(start)}
    built["shard_nag_bytes"] = _bytes(root / "assets" / "shard_nag")
    marker.write_text(json.dumps(built))
    return built | {"cached": False}


def build_scores(root: Path, rows: int, shard_rows: int, seed: int) -> dict:
    """Score tables only (no shard files): what the manifest reads, with their footers."""
    import numpy as np
    import polars as pl

    from nag_assets.pipeline.layout import SHARD_SCORES, TARGET_NAG, NagFooter, table
    from nag_assets.pipeline.layout import ShardScoresFooter as Footer
    from nag_assets.storage import Storage, digest

    want = {"format": POOL_FORMAT, "rows": rows, "shard_rows": shard_rows, "seed": seed}
    marker = root / "BUILT.json"
    if marker.exists() and _read(marker) == want:
        return want | {"cached": True}
    shutil.rmtree(root, ignore_errors=True)
    storage = Storage(str(root))
    write_targets(storage, seed)
    versions = {t: NagFooter.read(storage, TARGET_NAG, t).version for t in TARGETS}
    for i, n in enumerate(sizes(rows, math.ceil(rows / shard_rows))):
        key, rng = f"m{i:05d}", np.random.default_rng([seed, 11, i])
        common, cols = rng.standard_normal(n), {}
        for t in TARGETS:  # the two targets' scores correlate at ~0.9, as NAG's do
            noise = rng.standard_normal(n)
            cols[t] = (0.05 + 0.01 * (0.95 * common + 0.32 * noise)).astype(np.float32)
        tokens = rng.integers(250, 750, n)
        df = pl.DataFrame({"id": doc_ids(key, n), "tokens": tokens, **cols})
        meta = Footer(digest("scale", key), list(TARGETS), versions, f"{key}.parquet",
                      digest("sha", key) * 2, digest("nag", key)).to_meta()  # fmt: skip
        storage.write_parquet(df, *table(SHARD_SCORES, key), meta=meta)
    marker.write_text(json.dumps(want))
    return want | {"cached": False}


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


# ---- one measured step (a child process) ------------------------------------------------


def scored_keys(storage) -> list[str]:
    from nag_assets.pipeline.layout import SHARD_SCORES

    return [f.name[: -len(".parquet")] for f in storage.list_files(SHARD_SCORES)]


def step_scores(storage, only: str) -> dict:
    from nag_assets.pipeline.shards import shard_scores

    keys = [only] if only else [f.name.split(".")[0] for f in storage.list_files("shards")]
    docs = sum(shard_scores(storage, k, list(TARGETS)).facts["documents"] for k in keys)
    return {"shards": len(keys), "documents": docs}


def step_manifest(storage, _: str) -> dict:
    from nag_assets.pipeline.mixture import MixtureSettings, selected_mixture

    keys = scored_keys(storage)
    step = selected_mixture(storage, keys, list(TARGETS), MixtureSettings(), copy=False)
    chosen = {t: f["documents"] for t, f in step.facts["targets"].items()}
    return {"shards": len(keys), "manifest_files": len(step.facts["manifest"]), "chosen": chosen}


def step_corpus(storage, workers: str) -> dict:
    from nag_assets.executors.maps import executor_map
    from nag_assets.pipeline.corpus import write_corpus
    from nag_assets.settings import ExecutorSettings

    w = int(workers)
    step = write_corpus(storage, map_fn=executor_map(ExecutorSettings(), w), workers=w)
    return {"parts": step.facts["parts"], "reused": step.facts["reused"], "workers": w}


def step_check(storage, _: str) -> dict:
    from nag_assets.pipeline.corpus import FOLDER, POINTER
    from nag_assets.pipeline.layout import read_json
    from nag_assets.pipeline.mixture import check_mixture

    found = check_mixture(storage, read_json(storage, FOLDER, POINTER)["facts"])
    return {"rows": found.rows, "bad_rows": found.bad_rows, "over_budget": len(found.over_budget)}


CHILD_STEPS = {
    "scores": step_scores,
    "manifest": step_manifest,
    "corpus": step_corpus,
    "check": step_check,
}


def child(step: str, root: str, arg: str) -> dict:
    import nag_assets.executors.maps
    import nag_assets.pipeline.mixture  # noqa: F401  (imports before the clock)
    from nag_assets.storage import Storage

    storage = Storage(root)
    before, cpu = _bench.vmhwm(), cpu_seconds()
    start = time.perf_counter()
    facts = CHILD_STEPS[step](storage, arg)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu": cpu, "peak": _bench.vmhwm(), "before": before, **facts}


def cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread, user and system."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(step: str, root: Path, docs: int, arg: object = "") -> dict:
    """Run one step in a fresh process: seconds, per 10^5 documents, peak memory, facts."""
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--child", step, str(root), str(arg)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"step {step} on {root} failed:\n{done.stderr[-4000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    seconds, cpu, peak, before = (r.pop(k) for k in ("seconds", "cpu", "peak", "before"))
    return {
        "seconds": round(seconds, 2),
        "seconds_per_1e5_docs": round(seconds * PER / docs, 3),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1e5_docs": round(cpu * PER / docs, 3),
        "peak_rss_mb": _bench.mib(peak),
        "rss_before_step_mb": _bench.mib(before),
        "extra_mb_per_1e5_docs": round(_bench.mib(peak - before) * PER / docs, 1),
        "load_1m": round(load, 2),
        "facts": r,
    }


# ---- a configuration: docs x shards ---------------------------------------------------------


def reset(root: Path, *rels: str) -> None:
    for rel in rels:
        shutil.rmtree(root / rel, ignore_errors=True)
    link = root / "selected_mixture"
    if link.is_symlink():
        link.unlink()


def reset_corpus(root: Path) -> None:
    """Empty the part cache and unpublish the corpus: the next copy writes every part."""
    version = _read(root / "mixture_versions" / "CURRENT.json")["version"]
    reset(root, "corpus_parts", f"mixture_versions/{version}")
    (root / "mixture_versions" / "CORPUS.json").unlink(missing_ok=True)


def warm(folder: Path) -> None:
    """Read every file once, so that no worker count pays for the disk and the next not."""
    for f in sorted(folder.glob("*.parquet")):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def corpus_rounds(root: Path, docs: int, workers: list[int], rounds: int) -> dict:
    """corpus_w<N> per worker count: the best of `rounds`, the order rotating each round."""
    best: dict[str, dict] = {}
    for r in range(rounds):
        shift = r % len(workers)
        for w in workers[shift:] + workers[:shift]:
            reset_corpus(root)
            got, name = measure("corpus", root, docs, w), f"corpus_w{w}"
            if name in best:
                got["peak_rss_mb"] = max(got["peak_rss_mb"], best[name]["peak_rss_mb"])
            if name not in best or got["seconds"] < best[name]["seconds"]:
                best[name] = got
    return best


def scaling(steps: dict, workers: list[int]) -> dict:
    """Throughput of N workers over 1 (seconds with 1 / seconds with N)."""
    if 1 not in workers:
        return {}
    one = steps["corpus_w1"]["seconds"]
    return {f"w{w}_vs_w1": round(one / steps[f"corpus_w{w}"]["seconds"], 2) for w in workers[1:]}


SPARE_FILES = ("shards/{}.parquet", "assets/shard_nag/{}.parquet")


def move_spare(root: Path, into: bool) -> None:
    """The spare shard (file and shard_nag table) into the pool, or back out of it."""
    from nag_assets.pipeline.common import INPUT_INDEX, record_input
    from nag_assets.storage import Storage

    for rel in (r.format(SPARE) for r in SPARE_FILES):
        src, dst = (root / "_spare" / rel, root / rel)[:: 1 if into else -1]
        os.replace(src, dst)
    if into:
        record_input(Storage(str(root)), "shards", SPARE, f"{SPARE}.parquet")
    else:
        (root / INPUT_INDEX / "shards" / f"{SPARE}.json").unlink()
        (root / "assets" / "shard_scores" / f"{SPARE}.parquet").unlink(missing_ok=True)


def new_shard(root: Path, built: dict, workers: int) -> dict:
    """One more shard arrives: its shard_scores, then the manifest, then the corpus copy."""
    n, docs = built["spare_docs"], built["docs"] + built["spare_docs"]
    move_spare(root, into=True)
    try:
        steps = {"shard_scores": measure("scores", root, n, SPARE)}
        steps["manifest"] = measure("manifest", root, docs)
        steps["corpus"] = measure("corpus", root, docs, workers)
    finally:
        move_spare(root, into=False)
    corpus = steps["corpus"]["facts"]
    return {
        "docs": n,
        "workers": workers,
        "steps": steps,
        "seconds": round(sum(s["seconds"] for s in steps.values()), 2),
        "parts": corpus["parts"],
        "parts_reused": corpus["reused"],
        "parts_rewritten": corpus["parts"] - corpus["reused"],
    }


def run_config(args, docs: int, shards: int) -> dict:
    root = Path(args.workdir) / f"pool-{docs}-{shards}"
    built = build_pool(root, docs, shards, args.seed)
    reset(root, *OUTPUTS)
    steps = {"shard_scores": measure("scores", root, docs)}
    steps["manifest"] = measure("manifest", root, docs)
    warm(root / "shards")
    steps |= corpus_rounds(root, docs, args.workers, args.rounds)
    steps["corpus_check"] = measure("check", root, docs)
    result = {"docs": docs, "shards": shards, "pool": built, "steps": steps}
    result["corpus_scaling"] = scaling(steps, args.workers)
    result["new_shard"] = new_shard(root, built, max(args.workers))
    print(json.dumps({k: result[k] for k in ("docs", "shards", "steps")}), file=sys.stderr)
    return result


# ---- the manifest alone, towards 10^8 --------------------------------------------------------


def extrapolate(points: list[dict], n: int) -> dict:
    """Seconds and peak at n documents: the line through the two largest points (fixed costs
    apart), and plain proportion from the largest (seconds) or its growth (memory)."""
    big = points[-1]
    grow = n / big["rows"]
    proportional = {
        "seconds": round(big["seconds"] * grow, 1),
        "peak_rss_mb": round(big["rss_before_step_mb"] + big["extra_mb"] * grow, 1),
    }
    if len(points) < 2:
        return {"proportional": proportional}
    small = points[-2]
    span = big["rows"] - small["rows"]

    def line(key: str) -> float:
        slope = (big[key] - small[key]) / span
        return round(big[key] + slope * (n - big["rows"]), 1)

    return {
        "linear": {k: line(k) for k in ("seconds", "peak_rss_mb")},
        "proportional": proportional,
    }


def manifest_scale(args) -> dict:
    points = []
    rows_list = sorted({max(args.manifest_rows // 10, 1), args.manifest_rows})
    for rows in rows_list:
        root = Path(args.workdir) / f"scores-{rows}-{args.manifest_shard_rows}"
        start = time.perf_counter()
        built = build_scores(root, rows, args.manifest_shard_rows, args.seed)
        reset(root, "mixture_versions")
        got = measure("manifest", root, rows)
        extra = round(got["peak_rss_mb"] - got["rss_before_step_mb"], 1)
        points.append({"rows": rows, "build_s": _since(start), "cached": built["cached"]})
        keep = ("seconds", "cpu_s", "peak_rss_mb", "rss_before_step_mb")
        points[-1] |= {k: got[k] for k in keep}
        points[-1] |= {"extra_mb": extra, "load_1m": got["load_1m"], "facts": got["facts"]}
    n = MANIFEST_TARGET["documents"]
    guess = extrapolate(points, n)
    worst = {k: max(g[k] for g in guess.values()) for k in ("seconds", "peak_rss_mb")}
    met = worst["seconds"] <= MANIFEST_TARGET["seconds"]
    met = met and worst["peak_rss_mb"] <= MANIFEST_TARGET["gib"] * 1024
    return {"points": points, "extrapolated_1e8": guess, "worst_1e8": worst, "target_met": met}


# ---- the report ---------------------------------------------------------------------------------


def per_1e5(configs: list[dict], key: str) -> dict:
    return {
        f"{c['docs']}x{c['shards']}": {s: v[key] for s, v in c["steps"].items()} for c in configs
    }


def summary(configs: list[dict], manifest: dict | None) -> dict:
    """Seconds per 10^5 documents per step and configuration, and the issue's targets."""
    targets: dict = {}
    if manifest:
        targets["manifest_1e8_within_2min_2gib"] = manifest["target_met"]
    ratios = [c["corpus_scaling"].get("w2_vs_w1") for c in configs]
    ratios = [r for r in ratios if r is not None]
    if ratios:
        targets |= {"corpus_w2_vs_w1": ratios, "corpus_w2_vs_w1_ge_1_7": min(ratios) >= 1.7}
    if configs:
        big = max(configs, key=lambda c: (c["shards"], c["docs"]))
        new = big["new_shard"]
        targets["new_shard_pool"] = f"{big['docs']}x{big['shards']}"
        targets |= {f"new_shard_{k}": new[k] for k in ("parts_rewritten", "parts_reused")}
        targets["new_shard_seconds"] = new["seconds"]
    return {
        "seconds_per_1e5_docs": per_1e5(configs, "seconds_per_1e5_docs"),
        "cpu_s_per_1e5_docs": per_1e5(configs, "cpu_s_per_1e5_docs"),
        "targets": targets,
    }


def parse(argv):
    count = lambda s: int(float(s))  # noqa: E731  (1e6 reads as 1000000)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", nargs="*", type=count, default=[100_000, 1_000_000])
    p.add_argument("--shards", nargs="+", type=count, default=[10, 1000])
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--manifest-rows", type=count, default=10_000_000, help="0: none")
    p.add_argument("--manifest-shard-rows", type=count, default=100_000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(Path.home() / ".cache" / "nag_assets" / "scale"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # STEP ROOT ARG
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.shards, args.workers = [2000], [4], [1, 2]
        args.manifest_rows, args.manifest_shard_rows = 20_000, 5000
    args.workers = sorted(set(args.workers))
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nag-bench-scale-") as tmp:
        if args.quick:
            args.workdir = tmp
        configs = [run_config(args, d, s) for d in args.docs for s in args.shards]
        manifest = manifest_scale(args) if args.manifest_rows else None
    return _bench.emit(
        {
            "benchmark": "scale",
            "nag_shape": SHAPE,
            "targets": list(TARGETS),
            "summary": summary(configs, manifest),
            "configs": configs,
            "manifest_scale": manifest,
            "workdir": None if args.quick else args.workdir,
            "wall_s": _since(started),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()
