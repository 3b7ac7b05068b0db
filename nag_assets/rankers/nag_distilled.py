"""`nag_distilled` (beyond the paper): NAG at classifier cost. A scorer learns, per target,
the NAG scores of a deterministic sample of the pool (`nag_assets.distill`) and scores every
document from its text alone: the backbone's tokenizer and two small weight tables, no
forward pass. Its selection approximates NAG's (see benchmarks/distilled.py for how well).

The sample is drawn by a hash of (seed, shard, id) at `sample_fraction`; the backbone is
loaded only for its tokenizer and input embeddings (to train), never run.
"""

from __future__ import annotations

import numpy as np

from nag_assets import distill
from nag_assets.rankers.registry import Options, Ranker
from nag_assets.sources.files import InputError

SETTINGS = distill.DistillSettings()  # what the graph trains with (features, alpha, ...)


def _sample(inputs) -> dict[str, np.ndarray]:
    settings = distill.SampleSettings(inputs.options.sample_fraction, seed=inputs.seed)
    return distill.draw({s: inputs.shard_ids(s) for s in inputs.shards}, settings)


def _fit(inputs) -> tuple[distill.DistilledScorer, distill.Reader]:
    """Train on the sampled documents' NAG scores (their shard_scores rows)."""
    masks = _sample(inputs)
    texts, scores = [], []
    for s in inputs.shards:
        rows = np.flatnonzero(masks[s])
        shard_texts = inputs.shard_texts(s)
        texts += [shard_texts[i] for i in rows]
        scores.append(inputs.nag_scores(s)[rows])
    if len(texts) < 2:
        raise InputError(
            f"nag_distilled: sample_fraction {inputs.options.sample_fraction} draws "
            f"{len(texts)} documents from the pool; at least 2 needed: raise it"
        )
    backbone = inputs.backbone()
    max_tokens = inputs.nag_max_tokens()
    read = distill.hf_reader(backbone.tokenizer, max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().cpu().numpy()
    scorer = distill.train(
        read, emb, texts, np.concatenate(scores), inputs.targets, SETTINGS, max_tokens
    )
    return scorer, read


def _score(inputs, state, shard: str) -> np.ndarray:
    scorer, read = state
    return scorer.score(read, inputs.shard_texts(shard))


def _version(options: Options) -> list:
    distill.SampleSettings(options.sample_fraction, seed=options.seed)  # names a bad one
    return [options.sample_fraction, options.seed, sorted(vars(SETTINGS).items())]


RANKER = Ranker(
    "nag_distilled",
    "a cheap text model trained on the NAG scores of a sample of the pool",
    fit=_fit,
    score=_score,
    version_inputs=_version,
    whole_pool=True,  # the sample spans every shard
    uses_seed=True,
    order=15,
)
