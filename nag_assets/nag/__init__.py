"""NAG-based Ranking as a plain library: no Dagster, usable from a notebook.

backbone = load_backbone()                      # embedded SmolLM2-135M
nags, n_tokens = extract_nags(backbone, texts, top_k=5)
profile = build_profile(target_nags, backbone.d_ff)
scores = score_nags(nags, profile)
"""

from nag_assets.nag.backbone import (
    Backbone,
    BackboneError,
    BackboneFacts,
    Tokenizer,
    from_model,
    load_backbone,
    load_tokenizer,
    loaded,
)
from nag_assets.nag.extract import (
    extract_impacts,
    extract_nags,
    nags_from_impacts,
    neuron_baseline,
)
from nag_assets.nag.profile import build_profile, concentration, top_neurons
from nag_assets.nag.score import score_many, score_nags
from nag_assets.nag.select import (
    Cutoff,
    ScoredBatch,
    find_cutoffs,
    keep_mask,
    mixture_rows,
    select_under_budget,
    target_budgets,
)

__all__ = [
    "Backbone",
    "BackboneError",
    "BackboneFacts",
    "Cutoff",
    "ScoredBatch",
    "Tokenizer",
    "build_profile",
    "concentration",
    "extract_impacts",
    "extract_nags",
    "find_cutoffs",
    "from_model",
    "keep_mask",
    "load_backbone",
    "load_tokenizer",
    "loaded",
    "mixture_rows",
    "nags_from_impacts",
    "neuron_baseline",
    "score_many",
    "score_nags",
    "select_under_budget",
    "target_budgets",
    "top_neurons",
]
