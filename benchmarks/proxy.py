"""Pretraining proxy: does a NAG selection train a better model for its target than a
baseline's? The paper's experiment at toy scale.

For each target of a storage root (default: the demo's hellaswag and arc_easy) and each ranker
(nag, random, dsir, embedding), take that ranker's budgeted selection for the target (the
mixture's rule: fraction 0.2 of the pool split between the targets), cut every selection to
the same number of training tokens, and train a small Llama from scratch on it with the same
settings and seeds. Each model is scored on held-out examples of the target's benchmark (not
among its target examples): mean next-token loss on the example text (question + right
answer, as the target set holds it), and multiple-choice accuracy by comparing the summed
log-likelihoods of each answer after its context.

    .venv/bin/python benchmarks/proxy.py --root demo_root --seeds 3 --epochs 4 --eval 100

prints JSON (about 14 min on 2 shared cores; docs/results.md has the figures).

The tokenizer is the backbone's (SmolLM2), restricted to the token ids the training and
evaluation texts use, so the embedding table stays small.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import polars as pl
import torch

from nag_assets.checks import benchmark_of, ready
from nag_assets.checks.agreement import ranker_selections, ranker_table
from nag_assets.checks.variants import FOLDER as VARIANTS
from nag_assets.pipeline.layout import RANK_SEP, TARGET_DATASET, table
from nag_assets.pipeline.shards import read_shard
from nag_assets.rankers import names as ranker_names
from nag_assets.sources import benchmarks as bench
from nag_assets.sources.files import read_documents
from nag_assets.storage import Storage

_TAGS = re.compile(r"\[[^\]]*\]")  # HellaSwag's "[header]"-style tags


def mc_items(name: str, skip_ids: set[str], n: int) -> list[dict]:
    """Up to n held-out multiple-choice items {id, context, choices, label, text}."""
    spec = bench._specs()[name]
    path = os.path.join(bench._data_root(), spec.path, spec.split, bench._ARROW_FILE)
    out = []
    for index, row in enumerate(bench._read_rows(path)):
        local = row[spec.id_column] if spec.id_column else f"{spec.split}/{index}"
        if f"{name}/{local}" in skip_ids:
            continue
        if name == "hellaswag":
            if str(row.get("label", "")) == "":
                continue
            ctx = _TAGS.sub(" ", row["ctx"]).strip()
            choices = [_TAGS.sub(" ", e).strip() for e in bench._parsed(row["endings"])]
            label = int(row["label"])
        elif name.startswith("arc_"):
            ch = bench._parsed(row["choices"])
            if row["answerKey"] not in list(ch["label"]):
                continue
            ctx, choices = row["question"], list(ch["text"])
            label = list(ch["label"]).index(row["answerKey"])
        elif name.startswith("mmlu_"):
            ctx, choices = row["question"], list(bench._parsed(row["choices"]))
            label = int(row["answer"])
        elif name == "sciq":
            ctx = " ".join(x for x in (row["support"], row["question"]) if x)
            choices = [row[f"distractor{i}"] for i in (1, 2, 3)] + [row["correct_answer"]]
            label = 3
        else:
            raise ValueError(f"no multiple-choice reader for {name}")
        text = spec.to_text(row)
        if text:
            out.append({"context": ctx, "choices": choices, "label": label, "text": text})
        if len(out) >= n:
            break
    return out


def ranked_texts(
    storage: Storage, targets: list[str], usable: dict, fraction: float, names: list[str]
) -> dict:
    """{name: {target: [texts of its selection, best first]}}; a name is a ranker, or
    `variant:NAME` for a selection the variants check stored."""
    docs = {}
    for s in sorted(usable):
        name, data, _ = read_shard(storage, s)
        d = read_documents(data, name, s)
        docs.update({f"{i}{RANK_SEP}{s}": t for i, t in zip(d["id"], d["text"])})
    out = {}
    for name in names:
        if name.startswith("variant:"):
            df = storage.read_parquet(f"{VARIANTS}/{name[8:]}", "selection.parquet")
        else:
            table = ranker_table(storage, name, usable, targets)
            picked = ranker_selections(table, targets, fraction)
            df = pl.concat(
                [
                    table.filter(pl.col("rank").is_in(list(picked[t]))).select(
                        pl.lit(t).alias("target"), "rank", pl.col(t).alias("score")
                    )
                    for t in targets
                ]
            )
        df = df.sort(["target", "score", "rank"], descending=[False, True, False])
        out[name] = {
            t: [docs[r] for r in df.filter(pl.col("target") == t)["rank"]] for t in targets
        }
    return out


def build_model(vocab: int, seed: int, width: int, layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def train(model, blocks: torch.Tensor, seed: int, epochs: int, batch: int, lr: float) -> float:
    steps = epochs * math.ceil(len(blocks) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * s / steps))
        ),
    )
    g = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        for idx in torch.randperm(len(blocks), generator=g).split(batch):
            x = blocks[idx]
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    return float(loss.detach())


@torch.inference_mode()
def seq_logprobs(model, seqs: list[list[int]], starts: list[int]) -> list[tuple[float, int]]:
    """(sum of log p(token) from position `start` on, tokens counted) per sequence."""
    out = []
    for s in range(0, len(seqs), 32):
        rows, st = seqs[s : s + 32], starts[s : s + 32]
        width = max(len(r) for r in rows)
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.tensor(r)
        logp = torch.log_softmax(model(input_ids=x).logits.float(), -1)
        for i, r in enumerate(rows):
            pos = torch.arange(max(st[i], 1), len(r))
            lp = logp[i, pos - 1, torch.tensor(r)[pos]]
            out.append((float(lp.sum()), len(pos)))
    return out


def evaluate(model, items: list[dict], enc) -> dict:
    texts = [enc(it["text"]) for it in items]
    res = seq_logprobs(model, texts, [1] * len(texts))
    loss = -sum(r[0] for r in res) / max(1, sum(r[1] for r in res))
    seqs, starts, owner = [], [], []
    for k, it in enumerate(items):
        ctx = enc(it["context"])
        for c in it["choices"]:
            seqs.append(ctx + enc(" " + c))
            starts.append(len(ctx))
            owner.append(k)
    lps = seq_logprobs(model, seqs, starts)
    best: dict[int, list[float]] = {}
    for k, (lp, _) in zip(owner, lps):
        best.setdefault(k, []).append(lp)
    acc = float(np.mean([int(np.argmax(best[k]) == it["label"]) for k, it in enumerate(items)]))
    return {"loss": loss, "accuracy": acc}


def train_and_score(picks: dict, items: dict, tok, targets: list[str], names: list[str], args):
    """({target: {selection: held-out loss and accuracy over seeds}}, vocabulary size): per
    target, every selection (`picks[name][target]`: texts, best first) cut to the same token
    count trains one small Llama per seed, scored on the target's held-out `items`."""
    # a compact vocabulary: the ids every text here uses; 0 is end-of-document / unknown
    all_texts = [x for r in picks.values() for ts in r.values() for x in ts]
    all_texts += [
        s
        for its in items.values()
        for it in its
        for s in (it["text"], it["context"], *(" " + c for c in it["choices"]))
    ]
    ids = sorted({i for x in tok(all_texts, add_special_tokens=False)["input_ids"] for i in x})
    remap = {i: k + 1 for k, i in enumerate(ids)}

    def enc(text: str) -> list[int]:
        return [remap.get(i, 0) for i in tok(text, add_special_tokens=False)["input_ids"]]

    def blocks_of(texts: list[str]) -> list[int]:
        stream = []
        for x in texts:
            stream += [*enc(x), 0]
        return stream

    results: dict = {}
    for t in targets:
        streams = {r: blocks_of(picks[r][t]) for r in names}
        n_blocks = min(len(s) for s in streams.values()) // args.seq
        results[t] = {"train_tokens": n_blocks * args.seq, "eval_items": len(items[t])}
        for r in names:
            blocks = torch.tensor(streams[r][: n_blocks * args.seq]).view(n_blocks, args.seq)
            runs = []
            for seed in range(args.seeds):
                model = build_model(len(ids) + 1, seed, args.width, args.layers)
                train(model, blocks, seed, args.epochs, args.batch, args.lr)
                runs.append(evaluate(model, items[t], enc))
            results[t][r] = {
                "loss_mean": round(float(np.mean([x["loss"] for x in runs])), 4),
                "loss_sd": round(float(np.std([x["loss"] for x in runs], ddof=1)), 4)
                if len(runs) > 1
                else None,
                "accuracy_mean": round(float(np.mean([x["accuracy"] for x in runs])), 4),
                "accuracy_sd": round(float(np.std([x["accuracy"] for x in runs], ddof=1)), 4)
                if len(runs) > 1
                else None,
                "loss_per_seed": [round(x["loss"], 4) for x in runs],
            }
            print(f"{t} {r}: {results[t][r]}", file=sys.stderr, flush=True)
    return results, len(ids) + 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.environ.get("NAG_ASSETS_ROOT", "demo_root"))
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval", type=int, default=200, help="held-out items per target")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--selections",
        default=",".join(ranker_names()),
        help="rankers, and variant:NAME for selections the variants check stored "
        "(e.g. nag,variant:normalized,variant:k20)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    storage = Storage(args.root)
    targets, usable = ready(storage, None)
    targets = [t for t in targets if benchmark_of(storage, t)]
    from transformers import AutoTokenizer

    from nag_assets.nag.backbone import embedded_folder

    tok = AutoTokenizer.from_pretrained(str(embedded_folder()))
    names = args.selections.split(",")
    picks = ranked_texts(storage, targets, usable, args.fraction, names)
    items = {}
    for t in targets:
        used = set(storage.read_parquet(*table(TARGET_DATASET, t))["id"].to_list())
        items[t] = mc_items(benchmark_of(storage, t), used, args.eval)
    results, vocab = train_and_score(picks, items, tok, targets, names, args)
    out = {
        "benchmark": "proxy",
        "settings": {k: v for k, v in vars(args).items()},
        "vocab": vocab,
        "targets": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
