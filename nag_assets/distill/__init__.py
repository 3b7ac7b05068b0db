"""NAG at classifier cost: a scorer distilled from NAG scores on a sample of the pool.

The backbone reads only a deterministic sample of the pool (`draw`); a cheap text model per
target learns the sample's NAG scores (`train`); every other document is scored from its text
alone (`DistilledScorer.score`). Plain Python, no Dagster.

    read = hf_reader(backbone.tokenizer, settings.max_tokens)
    emb = backbone.model.get_input_embeddings().weight.float().numpy()
    scorer = train(read, emb, sample_texts, sample_nag_scores, targets, DistillSettings(), 120)
    scores = scorer.score(read, texts)         # (n, T) float32 in (0, 1)
"""

from nag_assets.distill.model import (
    FEATURES,
    DistilledScorer,
    DistillSettings,
    Reader,
    hf_reader,
    merge,
    train,
)
from nag_assets.distill.sample import ALL_SHARDS, SampleSettings, draw, sample_keys

__all__ = [
    "ALL_SHARDS",
    "FEATURES",
    "DistillSettings",
    "DistilledScorer",
    "Reader",
    "SampleSettings",
    "draw",
    "hf_reader",
    "merge",
    "sample_keys",
    "train",
]
