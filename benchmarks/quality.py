"""Selection quality: does a ranker pick documents on its target's topic?

A topic-labelled pool (Wikipedia leads spread over the alphabet, each with its `topic`) and
targets from the installed benchmarks, each paired with the topics a good selector should
enrich (MMLU high-school mathematics -> Mathematics, ...; `TARGETS` says which and why).
Per target, each ranker and each NAG variant keeps `--fraction` of the pool's tokens (the
mixture's budgeted selection, one target at a time); its topic lift is the share of the
paired topics among the kept documents over their share in the pool (1 = no better than
random; the ceiling is 1 / pool share while the budget holds fewer documents than the
topic has).

Settings are chosen on the `dev` targets only; the `heldout` targets, which pair the same
topics with other benchmarks, report how the choice generalises. One backbone pass (bf16)
over the pool and the targets keeps every neuron's impact, up-projection and down-projection
output, cached on disk, so reruns cost seconds; NAGs of any neuron type, K, normalization
and layer subset follow from it.

    .venv/bin/python benchmarks/quality.py [--pool 2400] [--examples 150] [--fraction 0.1]

prints JSON (first run ~10 min on 2 shared cores, the backbone pass; then ~2 min).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _bench
import numpy as np
import torch

from nag_assets.checks.common import selections
from nag_assets.nag import build_profile, load_backbone, score_many
from nag_assets.nag.backbone import Backbone, cache_dir
from nag_assets.nag.extract import nags_from_impacts
from nag_assets.nag.layers import parse_layers
from nag_assets.nag.profile import contrastive_profile
from nag_assets.sources.benchmarks import load_benchmark
from nag_assets.sources.wiki import load_wiki_leads, spread

SCIENCE = ("Physical sciences", "Biology and health sciences")


@dataclass(frozen=True)
class Target:
    benchmark: str
    topics: tuple[str, ...]
    split: str  # dev: used to choose settings; heldout: only reported


# Pairs whose link is plain from the subject's name; each topic is paired once in dev and
# once held out, with a different benchmark. Grade-school science (ARC, SciQ) asks about
# physics, chemistry, earth science and biology alike, so it is paired with both sciences.
TARGETS = (
    Target("mmlu_high_school_mathematics", ("Mathematics",), "dev"),
    Target("mmlu_high_school_biology", ("Biology and health sciences",), "dev"),
    Target("mmlu_conceptual_physics", ("Physical sciences",), "dev"),
    Target("mmlu_high_school_world_history", ("History",), "dev"),
    Target("mmlu_world_religions", ("Philosophy and religion",), "dev"),
    Target("mmlu_high_school_macroeconomics", ("Society and social sciences",), "dev"),
    Target("arc_easy", SCIENCE, "dev"),
    Target("mmlu_elementary_mathematics", ("Mathematics",), "heldout"),
    Target("mmlu_anatomy", ("Biology and health sciences",), "heldout"),
    Target("mmlu_high_school_chemistry", ("Physical sciences",), "heldout"),
    Target("mmlu_prehistory", ("History",), "heldout"),
    Target("mmlu_philosophy", ("Philosophy and religion",), "heldout"),
    Target("mmlu_sociology", ("Society and social sciences",), "heldout"),
    Target("sciq", SCIENCE, "heldout"),
)

# A second pool and target family, held out whole (`--pool-set b`): the leads between pool
# a's (every 6th lead from the 4th on: no lead of pool a), and MMLU subjects used nowhere
# above, two of them paired with topics no dev target has (Geography, Technology).
TARGETS_B = (
    Target("mmlu_college_mathematics", ("Mathematics",), "heldout"),
    Target("mmlu_college_biology", ("Biology and health sciences",), "heldout"),
    Target("mmlu_high_school_physics", ("Physical sciences",), "heldout"),
    Target("mmlu_astronomy", ("Physical sciences",), "heldout"),
    Target("mmlu_high_school_us_history", ("History",), "heldout"),
    Target("mmlu_moral_disputes", ("Philosophy and religion",), "heldout"),
    Target("mmlu_high_school_government_and_politics", ("Society and social sciences",), "heldout"),
    Target("mmlu_high_school_geography", ("Geography",), "heldout"),
    Target("mmlu_electrical_engineering", ("Technology",), "heldout"),
)
POOLS = {"a": (0, TARGETS), "b": (3, TARGETS_B)}  # name -> (first lead, targets)

CHUNK = 256  # texts per cached piece of the backbone pass
DOWN_PROJ_SUFFIXES = (".mlp.down_proj", ".mlp.c_proj", ".mlp.dense_4h_to_h")


@dataclass
class Data:
    """The pool, the targets' examples and the impact sample, with every neuron's impact."""

    ids: np.ndarray  # (n_pool,) str, the selection's tie-breaker
    titles: list[str]
    topics: np.ndarray  # (n_pool,) str
    texts: list[str]  # pool texts
    tokens: np.ndarray  # (n_pool,) full token count: what the budget counts
    examples: dict[str, list[str]]
    example_ids: dict[str, set[str]]  # not among the proxy's held-out items
    up: np.ndarray  # (n_all, L, d_ff) float32: the pool, then each target's examples
    down: np.ndarray  # (n_all, L, d_model) float32
    lengths: np.ndarray  # (n_all,) tokens used (<= max_tokens)
    tokenizer: object
    targets: tuple[Target, ...] = TARGETS

    @property
    def spans(self) -> dict[str, tuple[int, int]]:
        ends = np.cumsum([len(self.texts), *(len(x) for x in self.examples.values())])
        out = {"pool": (0, int(ends[0]))}
        return out | {t: (int(ends[i]), int(ends[i + 1])) for i, t in enumerate(self.examples)}


def find_down_projs(model: torch.nn.Module) -> list[torch.nn.Module]:
    found = [m for n, m in model.named_modules() if n.endswith(DOWN_PROJ_SUFFIXES)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no MLP down-projection this script knows")
    return found


class _Stop(Exception):
    pass


def impacts(
    backbone: Backbone, texts: list[str], max_tokens: int, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(up (n, L, d_ff), down (n, L, d_model), lengths): per text and layer the mean over its
    tokens of |up_proj output| and of |down_proj output|, from one forward pass that stops
    at the last down-projection (length-sorted, right-padded, no mask: as `extract.py`)."""
    from tqdm.auto import tqdm

    ids = backbone.tokenize(texts, max_tokens)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    order = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
    ups, downs = backbone.up_projs, find_down_projs(backbone.model)
    L = len(ups)
    d_model = downs[0].weight.shape[0] if hasattr(downs[0], "out_features") else downs[0].nf
    up = np.zeros((len(ids), L, backbone.d_ff), dtype=np.float32)
    down = np.zeros((len(ids), L, d_model), dtype=np.float32)
    got: dict[str, list] = {"up": [], "down": []}
    state = {}

    def hook(kind: str, last: bool):
        def fn(_m, _i, out):
            got[kind].append(torch.bmm(state["w"], out.abs().float()).squeeze(1))
            if last:
                raise _Stop

        return fn

    handles = [m.register_forward_hook(hook("up", False)) for m in ups]
    handles += [m.register_forward_hook(hook("down", i == L - 1)) for i, m in enumerate(downs)]
    bar = tqdm(total=len(order), unit="text", desc="impacts", file=sys.stderr)
    try:
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                rows = order[s : s + batch]
                width = int(lengths[rows[0]])
                x = torch.zeros((len(rows), width), dtype=torch.long)
                w = torch.zeros((len(rows), 1, width), dtype=torch.float32)
                for r, i in enumerate(rows):
                    x[r, : lengths[i]] = torch.tensor(ids[i])
                    w[r, 0, : lengths[i]] = 1.0 / lengths[i]
                state["w"], got["up"], got["down"] = w, [], []
                with contextlib.suppress(_Stop):
                    backbone.model(input_ids=x, use_cache=False)
                up[rows] = torch.stack(got["up"], 1).numpy()
                down[rows] = torch.stack(got["down"], 1).numpy()
                bar.update(len(rows))
    finally:
        bar.close()
        for h in handles:
            h.remove()
    return up, down, lengths


def pool_leads(n: int, first: int = 0):
    """`n` leads spread over the alphabet (every k-th, as `spread`), from lead `first` on."""
    leads = load_wiki_leads()
    if first == 0:
        return spread(leads, n)
    return leads.slice(first).gather_every(max(1, leads.height // max(n, 1))).head(n)


def load_data(args, backbone: Backbone) -> Data:
    first, targets = POOLS[getattr(args, "pool_set", "a")]
    leads = pool_leads(args.pool, first)
    frames = {t.benchmark: load_benchmark(t.benchmark, limit=args.examples) for t in targets}
    examples = {t: df["text"].to_list() for t, df in frames.items()}
    texts = leads["text"].to_list()
    every = texts + [x for v in examples.values() for x in v]
    folder = Path(args.cache or cache_dir() / "quality")
    folder.mkdir(parents=True, exist_ok=True)
    parts = []  # in chunks, each cached on its own: an interrupted pass resumes
    for s in range(0, len(every), CHUNK):
        chunk = every[s : s + CHUNK]
        key = json.dumps([backbone.fingerprint, args.max_tokens, chunk])
        path = folder / f"impacts-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        if not path.exists():
            print(f"impacts of texts {s}-{s + len(chunk)} of {len(every)}", file=sys.stderr)
            up, down, lengths = impacts(backbone, chunk, args.max_tokens, args.batch)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, up=up, down=down, lengths=lengths)
            tmp.replace(path)
        parts.append(np.load(path))
    up = np.concatenate([z["up"] for z in parts])
    down = np.concatenate([z["down"] for z in parts])
    lengths = np.concatenate([z["lengths"] for z in parts])
    return Data(
        leads["id"].to_numpy(),
        leads["title"].to_list(),
        leads["topic"].to_numpy(),
        texts,
        backbone.count_tokens(texts),
        examples,
        {t: set(df["id"].to_list()) for t, df in frames.items()},
        up,
        down,
        lengths,
        backbone.tokenizer,
        targets,
    )


@dataclass(frozen=True)
class Variant:
    """One way of making NAG scores: the paper's method is Variant()."""

    neurons: str = "up"  # up | down | up+down (scores averaged over both types' layers)
    impact: str = "raw"  # raw | normalized (divided by the neuron's mean impact over the pool)
    top_k: int = 5
    layers: str = "all"  # a `nag.layers` spec: all | last | last:N | from:F | 20-29
    profile: str = "paper"  # paper | contrastive | idf

    @property
    def name(self) -> str:
        return f"{self.neurons}/{self.impact}/k{self.top_k}/{self.layers}/{self.profile}"


PAPER = Variant()
TUNED = Variant(
    "up", "normalized", 5, "from:0.67", "paper"
)  # 20-29 of 30 layers  # the graph's default preset, `tuned`


def idf_profile(target: np.ndarray, pool: np.ndarray, pool_docs: int, k: int) -> np.ndarray:
    """Target frequency times the neuron's inverse document frequency in the pool's NAGs,
    log((n + 1) / (df + 1)), renormalised per layer (scores stay in [0, 1])."""
    df = pool * pool_docs * k
    w = target * np.log((pool_docs + 1.0) / (df + 1.0))
    sums = w.sum(axis=1, keepdims=True)
    return np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)


class Scorer:
    """Every variant's pool scores (n_pool, T), from the cached impacts."""

    def __init__(self, data: Data):
        self.data, self.spans = data, data.spans
        self.targets = list(data.examples)
        self._nags: dict = {}

    def nags(self, kind: str, impact: str, k: int) -> np.ndarray:
        key = (kind, impact, k)
        if key not in self._nags:
            x = self.data.up if kind == "up" else self.data.down
            baseline = None
            if impact == "normalized":
                a, b = self.spans["pool"]
                baseline = x[a:b][self.data.lengths[a:b] > 0].mean(0, dtype=np.float64)
            self._nags[key] = nags_from_impacts(x, self.data.lengths, k, baseline)
        return self._nags[key]

    def profiles(self, v: Variant, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(pool NAGs, (T, L, d) profiles) of one neuron type, all layers."""
        nags = self.nags(kind, v.impact, v.top_k)
        d = (self.data.up if kind == "up" else self.data.down).shape[-1]
        a, b = self.spans["pool"]
        pool = nags[a:b]
        profiles = [build_profile(nags[slice(*self.spans[t])], d) for t in self.targets]
        if v.profile != "paper":
            pool_profile = build_profile(pool, d)
            make = contrastive_profile if v.profile == "contrastive" else idf_profile
            profiles = [make(p, pool_profile, len(pool), v.top_k) for p in profiles]
        return pool, np.stack(profiles)

    def scores(self, v: Variant) -> np.ndarray:
        kinds = v.neurons.split("+")
        total = 0.0
        for kind in kinds:
            pool, profiles = self.profiles(v, kind)
            keep = list(parse_layers(v.layers, pool.shape[1]))
            total = total + score_many(pool[:, keep], profiles[:, keep]).astype(np.float64)
        return total / len(kinds)


def lifts(data: Data, scores: np.ndarray, fraction: float) -> dict[str, float]:
    """Per target: the paired topics' share among the kept documents over their pool share."""
    out = {}
    row = {r: i for i, r in enumerate(data.ids)}
    for c, t in enumerate(data.targets):
        picked = selections(scores[:, [c]], data.tokens, data.ids, [t.benchmark], fraction)
        rows = [row[r] for r in picked[t.benchmark]]
        on = np.isin(data.topics, t.topics)
        out[t.benchmark] = round(float(on[rows].mean() / on.mean()), 3)
    return out


def summary(per_target: dict[str, float], targets: tuple[Target, ...] = TARGETS) -> dict:
    """Mean lift per split (of the splits `targets` has), and the worst held-out target's."""
    split = {s: [per_target[t.benchmark] for t in targets if t.split == s] for s in SPLITS}
    out = {f"{s}_mean": round(float(np.mean(v)), 3) for s, v in split.items() if v}
    return out | {"heldout_worst": min(split["heldout"])}


SPLITS = ("dev", "heldout")


def ranker_scores(data: Data, args) -> dict[str, np.ndarray]:
    """The shipped baselines' scores (n_pool, T): random (per seed), dsir, embedding."""
    from nag_assets import rankers
    from nag_assets.rankers import dsir, embedding

    targets = list(data.examples)
    out = {f"random:{s}": rankers.random_scores(data.ids, targets, s) for s in range(args.seeds)}
    raw = rankers.NgramModel.fit(dsir.bucket_counts(data.texts))
    models = [rankers.NgramModel.fit(dsir.bucket_counts(x)) for x in data.examples.values()]
    out["dsir"] = rankers.dsir_scores(data.texts, models, raw)
    out["embedding"] = embedding.embedding_scores(*_embeddings(data, args))
    return out


def embedding_rows(data: Data, args) -> np.ndarray:
    """MiniLM embeddings of the pool, then of each target's examples (`spans`), cached
    beside the impacts."""
    from nag_assets.rankers import load_embedder

    every = data.texts + [x for v in data.examples.values() for x in v]
    key = hashlib.sha256(json.dumps(every).encode()).hexdigest()[:16]
    path = Path(args.cache or cache_dir() / "quality") / f"minilm-{key}.npy"
    if path.exists():
        return np.load(path)
    emb = load_embedder().encode(every)
    np.save(path, emb)
    return emb


def _embeddings(data: Data, args) -> tuple[np.ndarray, list[np.ndarray]]:
    """(pool embeddings, target centroids)."""
    from nag_assets.rankers import embedding

    emb = embedding_rows(data, args)
    n = len(data.texts)
    cents = []
    for a, b in list(data.spans.values())[1:]:
        cents.append(embedding.centroid(emb[a:b]))
    return emb[:n], cents


def run_proxy(data: Data, args, named: dict[str, Variant], baselines: dict) -> dict:
    """`benchmarks/proxy.py`'s pretraining proxy on this pool: per proxy target, each
    selection (a ranker, `chosen`, or `variant:NAME`) trains small models from scratch,
    scored on held-out items of the target's benchmark (not among its examples)."""
    import proxy

    scorer = Scorer(data)
    names = args.proxy_selections.split(",")
    targets = args.proxy.split(",")
    cols = {t: list(data.examples).index(t) for t in targets}
    picks: dict = {}
    for name in names:
        if name.startswith("variant:"):
            scores = scorer.scores(Variant(*_variant_fields(name[8:])))
        elif name in named:
            scores = scorer.scores(named[name])
        else:
            scores = baselines["random:0" if name == "random" else name]
        picks[name] = {
            t: _picked_texts(data, scores[:, c], t, args.fraction) for t, c in cols.items()
        }
    items = {t: proxy.mc_items(t, data.example_ids[t], args.proxy_eval) for t in targets}
    settings = argparse.Namespace(
        seq=128,
        seeds=args.proxy_seeds,
        width=128,
        layers=2,
        epochs=args.proxy_epochs,
        batch=16,
        lr=2e-3,
    )
    results, vocab = proxy.train_and_score(picks, items, data.tokenizer, targets, names, settings)
    return {"settings": vars(settings), "vocab": vocab, "targets": results}


def _variant_fields(name: str) -> tuple:
    neurons, impact, k, layers, profile = name.split("/")
    return neurons, impact, int(k.removeprefix("k")), layers, profile


def _picked_texts(data: Data, scores: np.ndarray, target: str, fraction: float) -> list[str]:
    """The selection's texts, best first (ties by id)."""
    picked = selections(scores[:, None], data.tokens, data.ids, [target], fraction)[target]
    rows = [i for i, r in enumerate(data.ids) if r in picked]
    rows.sort(key=lambda i: (-scores[i], data.ids[i]))
    return [data.texts[i] for i in rows]


def grid(args) -> list[Variant]:
    if args.variants:
        return [Variant(*_variant_fields(x)) for x in args.variants.split(",")]
    out = []
    for neurons in ("up", "down", "up+down"):
        for impact in ("raw", "normalized"):
            for k in args.ks:
                for layers in args.layer_sets:
                    for profile in ("paper", "contrastive", "idf"):
                        out.append(Variant(neurons, impact, k, layers, profile))
    return out


def quality(data: Data, args) -> dict:
    """Topic lift of every ranker and variant, the setting chosen on dev, and ablations."""
    scorer = Scorer(data)
    table: dict[str, dict] = {}
    baseline_scores = ranker_scores(data, args)
    for name, s in baseline_scores.items():
        table[name] = lifts(data, s, args.fraction)
    seeds = [table.pop(f"random:{s}") for s in range(args.seeds)]
    rand = {t: round(float(np.mean([x[t] for x in seeds])), 3) for t in seeds[0]}
    rankers = {"random": rand, "dsir": table["dsir"], "embedding": table["embedding"]}
    rankers["nag"] = lifts(data, scorer.scores(PAPER), args.fraction)
    rankers["nag (tuned, the default)"] = lifts(data, scorer.scores(TUNED), args.fraction)
    contrastive = Variant(profile="contrastive")
    rankers["nag_contrastive"] = lifts(data, scorer.scores(contrastive), args.fraction)
    variants = {}
    for i, v in enumerate(grid(args)):
        variants[v] = lifts(data, scorer.scores(v), args.fraction)
        if i % 50 == 0:
            print(f"variant {i}: {v.name}", file=sys.stderr, flush=True)
    stats = {v: summary(x, data.targets) for v, x in variants.items()}
    has_dev = any(t.split == "dev" for t in data.targets)  # pool b: everything held out
    ranked = sorted(variants, key=lambda v: -stats[v]["dev_mean" if has_dev else "heldout_mean"])
    best = ranked[0] if has_dev else TUNED
    proxy_results = None
    if args.proxy:
        named = {"nag": PAPER, "nag_contrastive": contrastive, "chosen": best}
        proxy_results = run_proxy(data, args, named, baseline_scores)
    return {
        "proxy": proxy_results,
        "rankers": {n: {**summary(x, data.targets), "per_target": x} for n, x in rankers.items()},
        "random_seed_sd": {
            k: round(float(np.std([summary(x, data.targets)[k] for x in seeds], ddof=1)), 3)
            for k in stats[ranked[0]]
            if k.endswith("_mean")
        },
        "chosen_on_dev": best.name if has_dev else None,
        "variants_by_dev": [{"variant": v.name, **stats[v]} for v in ranked],
        "per_target": {v.name: variants[v] for v in ranked[: args.top]},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=1600, help="Wikipedia leads, spread over A-Z")
    p.add_argument("--examples", type=int, default=100, help="target examples per benchmark")
    p.add_argument("--pool-set", choices=sorted(POOLS), default="a", help="b: held out whole")
    p.add_argument("--fraction", type=float, default=0.1, help="of pool tokens, per target")
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best when shared)")
    p.add_argument("--seeds", type=int, default=5, help="random ranker seeds")
    p.add_argument("--ks", type=lambda x: [int(k) for k in x.split(",")], default=[5, 10, 20, 50])
    p.add_argument(
        "--layer-sets",
        type=lambda x: x.split(";"),
        default=["all", "last", "0-14", "15-29", "20-29", "25-29", "10-19"],
        help="semicolon-separated layer specs",
    )
    p.add_argument(
        "--variants", default="", help="only these variants (comma list of names), not the grid"
    )
    p.add_argument("--top", type=int, default=15, help="variants reported per target")
    p.add_argument("--proxy", default="", help="benchmarks to run the pretraining proxy on")
    p.add_argument("--proxy-selections", default="nag,chosen,random,embedding,dsir")
    p.add_argument("--proxy-eval", type=int, default=100, help="held-out items per target")
    p.add_argument("--proxy-seeds", type=int, default=3)
    p.add_argument("--proxy-epochs", type=int, default=4)
    p.add_argument("--cache", default=None, help="impact cache folder (default: model cache)")
    p.add_argument("--quick", action="store_true", help="a tiny random model, 60 leads: smoke")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.quick:
        from nag_assets_tests.tiny import tiny_backbone

        args.pool, args.examples, args.ks, args.seeds = 60, 4, [5], 2
        args.layer_sets = ["all", "last", "from:0.67"]
        args.cache = args.cache or tempfile.mkdtemp(prefix="quality-")
        backbone = tiny_backbone()
    else:
        backbone = load_backbone("embedded", device="cpu", dtype="bf16")
    data = load_data(args, backbone)
    print(f"data ready in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    out = {
        "benchmark": "quality",
        "settings": vars(args),
        "machine": _bench.machine(),
        "pool": {
            "documents": len(data.texts),
            "tokens": int(data.tokens.sum()),
            "topic_share": {
                t: round(float(np.mean(data.topics == t)), 4) for t in sorted(set(data.topics))
            },
        },
        "targets": [
            {
                "benchmark": t.benchmark,
                "topics": list(t.topics),
                "split": t.split,
                "examples": len(data.examples[t.benchmark]),
            }
            for t in data.targets
        ],
        **quality(data, args),
    }
    out["seconds"] = round(time.perf_counter() - start, 1)
    return _bench.emit(out)


if __name__ == "__main__":
    main()
