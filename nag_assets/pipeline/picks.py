"""What a selection looks like, for judging it by eye: per target its top documents and those
at the cut-off, with a text preview and the shard's title-like column when it has one, and for
the NAG ranker which layers and neurons gave the top documents their score (`nag.explain`)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from nag_assets.nag.explain import Explanation, explain
from nag_assets.pipeline.common import nags_of
from nag_assets.pipeline.corpus import CORPUS_POINTER
from nag_assets.pipeline.layout import (
    MIXTURE_VERSIONS,
    SHARD_NAG,
    NagFooter,
    read_json,
    table,
)
from nag_assets.pipeline.targets import load_profile
from nag_assets.storage import Storage

TITLE_COLUMNS = ("title", "name", "headline", "subject", "url")
PREVIEW = 160
ORDER, DESCENDING = ["score", "id", "shard"], [True, False, False]  # the selection's rank


@dataclass(frozen=True)
class Pick:
    shard: str
    id: str
    score: float
    title: str | None
    preview: str
    why: Explanation | None = None


@dataclass(frozen=True)
class TargetPicks:
    top: list[Pick]
    cutoff: list[Pick]  # the last documents kept, lowest score last
    documents: int


def target_picks(
    storage: Storage, top: int = 5, edge: int = 3, explained: int = 3
) -> dict[str, TargetPicks]:
    """Per target of the mixture in force: its `top` documents (the first `explained` with
    their explanation when NAG ranked them) and the last `edge` it kept."""
    mix, counts = _candidates(storage, top, edge)
    title = next((c for c in TITLE_COLUMNS if c in mix.columns), None)
    nag_ranked = mix.height > 0 and set(mix["ranker"].unique().to_list()) == {"nag"}
    out = {}
    for target in sorted(counts):
        rows = mix.filter(pl.col("target") == target).sort(ORDER, descending=DESCENDING)
        profile = load_profile(storage, target)[0] if nag_ranked else None
        picks = [_pick(r, title) for r in rows.head(top).iter_rows(named=True)]
        if profile is not None:
            picks[:explained] = [_explained(storage, p, profile) for p in picks[:explained]]
        tail = rows.tail(min(edge, max(counts[target] - top, 0)))
        out[target] = TargetPicks(
            picks, [_pick(r, title) for r in tail.iter_rows(named=True)], counts[target]
        )
    return out


def _candidates(storage: Storage, top: int, edge: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Each target's first `top` and last `edge` rows of every part (so one part is in memory
    at a time), and how many rows each target has."""
    keep: list[pl.DataFrame] = []
    counts: dict[str, int] = {}
    for f in _pointer_files(storage):
        part = storage.read_parquet(MIXTURE_VERSIONS, f).sort(ORDER, descending=DESCENDING)
        for (target,), rows in part.group_by("target"):
            counts[target] = counts.get(target, 0) + rows.height
            keep.append(pl.concat([rows.head(top), rows.tail(edge)]).unique(maintain_order=True))
    return (pl.concat(keep, how="diagonal_relaxed") if keep else pl.DataFrame()), counts


def _pointer_files(storage: Storage) -> list[str]:
    """The parts of the corpus in force (its text is what the picks show)."""
    pointer = read_json(storage, MIXTURE_VERSIONS, CORPUS_POINTER)
    if pointer is None:
        raise FileNotFoundError(f"no corpus under {storage.url(MIXTURE_VERSIONS)} yet")
    return pointer["files"]


def _pick(row: dict, title: str | None) -> Pick:
    text = " ".join(str(row["text"]).split())
    preview = text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"
    name = str(row[title]) if title and row.get(title) is not None else None
    return Pick(row["shard"], str(row["id"]), float(row["score"]), name, preview)


def _explained(storage: Storage, pick: Pick, profile) -> Pick:
    footer = NagFooter.read(storage, SHARD_NAG, pick.shard)
    if footer is None:
        return pick
    df = storage.read_parquet(*table(SHARD_NAG, pick.shard)).filter(pl.col("id") == pick.id)
    if df.height != 1:
        return pick
    why = explain(nags_of(df, footer)[0], profile)
    return Pick(pick.shard, pick.id, pick.score, pick.title, pick.preview, why)


def picks_markdown(picks: TargetPicks) -> str:
    """The target's picks as a markdown table, then why the top documents scored."""

    def row(rank: str, p: Pick) -> str:
        cells = [rank, f"{p.score:.4f}", p.title or "", f"`{p.shard}/{p.id}`", p.preview]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = ["| rank | score | title | document | text |", "|---|---|---|---|---|"]
    lines += [row(str(i + 1), p) for i, p in enumerate(picks.top)]
    if picks.cutoff:
        lines.append("| … | | | | |")
        first = picks.documents - len(picks.cutoff) + 1
        lines += [row(f"{first + i} (cut-off)", p) for i, p in enumerate(picks.cutoff)]
    why = [(p, p.why) for p in picks.top if p.why]
    if why:
        lines += ["", "Why (share of the score per layer, and the neurons that gave most):", ""]
        for p, w in why:
            layers = ", ".join(f"L{layer} {v:.4f}" for layer, v in w.layers[:4])
            neurons = ", ".join(f"L{c.layer}#{c.neuron} {c.share:.4f}" for c in w.neurons)
            lines.append(f"- **{p.title or p.id}**: layers {layers}; neurons {neurons}")
    return "\n".join(lines)
