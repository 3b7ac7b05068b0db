"""`nag`, the default: NAG-based Ranking (the paper). Its scores are the step graph's own
`shard_scores`, written by `pipeline.shards.shard_scores`; the profile variant is `paper`."""

from nag_assets.rankers.registry import DEFAULT, Ranker

RANKER = Ranker(
    DEFAULT, "NAG-based Ranking, the default (the paper's profile)", stored=False, order=0
)
