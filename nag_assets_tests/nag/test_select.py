"""Selection under a token budget, against a naive global sort written here."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nag_assets.nag import (
    ScoredBatch,
    find_cutoffs,
    keep_mask,
    select_under_budget,
    target_budgets,
)

# Few distinct scores, some closer than one bin of even the default 2**18 bins: many exact
# ties (broken by doc id) and many ties within a bin.
SCORES = [0.0, 0.1, 0.25, 0.25 + 1e-7, 0.25 + 2e-7, 0.5, 0.7, 0.7 + 1e-9, 0.999, 1.0]
# each example builds a 2**18-bin histogram per target: no per-example deadline on slow CI
SLOW = settings(deadline=None)
NAMES = ["hellaswag", "arc", "piqa", "mmlu"]


# ---------------------------------------------------------------- reference


def ref_budgets(usable: int, targets: list[str], fraction: str, weights: dict) -> dict:
    """floor(fraction * usable tokens * w_t / sum(w)), in exact arithmetic."""
    w = {t: Fraction(weights.get(t, 1)) for t in targets}
    total = sum(w.values())
    return {t: math.floor(Fraction(fraction) * usable * w[t] / total) for t in targets}


def ref_select(scores: list[float], tokens: list[int], ids: list[str], budget: int) -> list[int]:
    """Rows kept: the longest prefix of (score desc, id asc) within the budget."""
    order = sorted(
        (i for i in range(len(ids)) if tokens[i] > 0), key=lambda i: (-scores[i], ids[i])
    )
    kept, used = [], 0
    for i in order:
        if used + tokens[i] > budget:
            break
        kept.append(i)
        used += tokens[i]
    return kept


def reference(pool: dict, targets: list[str], fraction: str, weights: dict) -> dict:
    usable = sum(t for t in pool["tokens"] if t > 0)
    budgets = ref_budgets(usable, targets, fraction, weights)
    scores = pool["scores"].tolist()
    return {
        t: (budgets[t], ref_select([s[c] for s in scores], pool["tokens"], pool["ids"], budgets[t]))
        for c, t in enumerate(targets)
    }


# ---------------------------------------------------------------- strategies


@st.composite
def pools(draw: st.DrawFn, max_targets: int = 3) -> dict:
    n = draw(st.integers(0, 30))
    n_targets = draw(st.integers(1, max_targets))
    ids = draw(
        st.lists(st.text("abc", min_size=1, max_size=4), min_size=n, max_size=n, unique=True)
    )
    tokens = draw(st.lists(st.integers(-2, 20), min_size=n, max_size=n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    cells = draw(st.lists(st.sampled_from(SCORES), min_size=n * n_targets, max_size=n * n_targets))
    scores = np.array(cells, dtype=dtype).reshape(n, n_targets)
    targets = NAMES[:n_targets]
    fraction = draw(st.sampled_from(["0.05", "0.1", "0.2", "0.333", "0.5", "0.75", "1"]))
    weights = {}
    if draw(st.booleans()):
        ws = draw(
            st.lists(st.integers(0, 3), min_size=n_targets, max_size=n_targets).filter(
                lambda w: sum(w) > 0
            )
        )
        weights = {t: w for t, w in zip(targets, ws) if w != 1 or draw(st.booleans())}
    return dict(
        ids=ids, tokens=tokens, scores=scores, targets=targets, fraction=fraction, weights=weights
    )


@st.composite
def shard_splits(draw: st.DrawFn, n: int) -> list[tuple[int, int]]:
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    edges = [0, *cuts, n]
    return list(itertools.pairwise(edges))


def shards_of(pool: dict, spans: list[tuple[int, int]]) -> list[ScoredBatch]:
    return [
        ScoredBatch(
            pool["scores"][a:b],
            np.array(pool["tokens"][a:b], dtype=np.int64),
            np.array(pool["ids"][a:b], dtype=str),
        )
        for a, b in spans
    ]


def kept_by_target(rows: np.ndarray, cols: np.ndarray, targets: list[str]) -> dict:
    return {t: sorted(rows[cols == c].tolist()) for c, t in enumerate(targets)}


# ---------------------------------------------------------------- properties


@SLOW
@given(pools())
def test_select_under_budget_equals_global_sort(pool: dict) -> None:
    targets = pool["targets"]
    cutoffs, rows, cols = select_under_budget(
        pool["scores"],
        pool["tokens"],
        pool["ids"],
        targets,
        float(pool["fraction"]),
        pool["weights"],
    )
    expected = reference(pool, targets, pool["fraction"], pool["weights"])
    assert kept_by_target(rows, cols, targets) == {t: sorted(v[1]) for t, v in expected.items()}
    for c in cutoffs:
        budget, kept = expected[c.target]
        spent = sum(pool["tokens"][i] for i in kept)
        assert c.budget == budget
        assert (c.documents, c.tokens) == (len(kept), spent)
        assert spent <= budget
    # pairs come grouped by target, rows ascending, no pair twice
    assert list(zip(cols.tolist(), rows.tolist())) == sorted(set(zip(cols.tolist(), rows.tolist())))


@SLOW
@given(pools(), st.sampled_from([8, 64]), st.data())
def test_sharded_cutoffs_equal_global_sort(pool: dict, bins: int, data) -> None:
    targets = pool["targets"]
    shards = shards_of(pool, data.draw(shard_splits(len(pool["ids"]))))
    cutoffs = find_cutoffs(
        lambda: iter(shards), targets, float(pool["fraction"]), pool["weights"], bins=bins
    )
    mask = np.concatenate([keep_mask(s, cutoffs, bins) for s in shards]).reshape(-1, len(targets))
    expected = reference(pool, targets, pool["fraction"], pool["weights"])
    assert [c.target for c in cutoffs] == targets
    tokens = np.array(pool["tokens"], dtype=np.int64)
    for c, (t, cut) in enumerate(zip(targets, cutoffs)):
        budget, kept = expected[t]
        assert np.nonzero(mask[:, c])[0].tolist() == sorted(kept)
        assert cut.budget == budget
        assert cut.documents == int(mask[:, c].sum())
        assert cut.tokens == int(tokens[mask[:, c]].sum()) <= budget

    # the same pool, split otherwise and read in another order, gives the same cut-offs
    other = shards_of(pool, data.draw(shard_splits(len(pool["ids"]))))
    order = data.draw(st.permutations(range(len(other))))
    again = find_cutoffs(
        lambda: (other[i] for i in order),
        targets,
        float(pool["fraction"]),
        pool["weights"],
        bins=bins,
    )
    assert again == cutoffs


@SLOW
@given(pools(max_targets=4))
def test_dedup_keeps_each_document_once_for_its_first_target(pool: dict) -> None:
    targets = pool["targets"]
    args = (
        pool["scores"],
        pool["tokens"],
        pool["ids"],
        targets,
        float(pool["fraction"]),
        pool["weights"],
    )
    _, rows, cols = select_under_budget(*args, dedup=True)
    _, all_rows, _ = select_under_budget(*args)
    expected = reference(pool, targets, pool["fraction"], pool["weights"])
    first: dict[int, int] = {}
    for c, t in enumerate(targets):
        for i in expected[t][1]:
            first.setdefault(i, c)
    assert len(set(rows.tolist())) == len(rows)
    assert dict(zip(rows.tolist(), cols.tolist())) == first
    assert set(rows.tolist()) == set(all_rows.tolist())
    assert len(all_rows) == sum(len(v[1]) for v in expected.values())


@SLOW
@given(pools())
def test_deterministic_across_runs(pool: dict) -> None:
    args = (
        pool["scores"],
        pool["tokens"],
        pool["ids"],
        pool["targets"],
        float(pool["fraction"]),
        pool["weights"],
    )
    first, second = select_under_budget(*args), select_under_budget(*args)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[2], second[2])


@given(
    st.integers(0, 10**7),
    st.sampled_from(["0.01", "0.1", "0.2", "0.29", "0.3", "1"]),
    st.lists(st.integers(0, 5), min_size=1, max_size=4).filter(lambda w: sum(w) > 0),
)
def test_budget_is_floor_of_weighted_share(pool_tokens: int, fraction: str, ws: list) -> None:
    targets = NAMES[: len(ws)]
    weights = dict(zip(targets, ws))
    budgets = target_budgets(pool_tokens, targets, float(fraction), weights)
    assert budgets == ref_budgets(pool_tokens, targets, fraction, weights)
    assert sum(budgets.values()) <= float(Fraction(fraction) * pool_tokens)


# ---------------------------------------------------------------- examples


def test_stops_at_first_overflow() -> None:
    # 18 tokens, fraction 0.5 -> budget 9: "a" (5) fits, "b" (10) overflows, so "c" (3) is
    # not taken even though it would fit: the selection is a prefix of the ranking
    cutoffs, rows, _ = select_under_budget(
        [0.9, 0.8, 0.7], [5, 10, 3], ["a", "b", "c"], ["t"], fraction=0.5
    )
    assert rows.tolist() == [0]
    (cut,) = cutoffs
    assert (cut.target, cut.budget, cut.documents, cut.tokens) == ("t", 9, 1, 5)


def test_ties_go_to_smaller_doc_id_and_empty_documents_are_never_kept() -> None:
    ids = ["d3", "d1", "d2", "d0", "e"]
    # "d0" scores highest but has no tokens; budget floor(0.5 * 6) = 3 takes "d1" (1) and
    # "d2" (2) of the three equal scores, in id order, then "d3" overflows
    scores, tokens = [0.5, 0.5, 0.5, 0.9, 0.1], [2, 1, 2, 0, 1]
    cutoffs, rows, _ = select_under_budget(scores, tokens, ids, ["t"], 0.5)
    assert sorted(ids[r] for r in rows) == ["d1", "d2"]
    assert (cutoffs[0].budget, cutoffs[0].documents, cutoffs[0].tokens) == (3, 2, 3)


def test_equal_weights_split_the_budget_evenly() -> None:
    b = target_budgets(1000, ["x", "y", "z"], fraction=0.3)
    assert b == {"x": 100, "y": 100, "z": 100}
    assert target_budgets(1000, ["x", "y"], 0.3, {"x": 3}) == {"x": 225, "y": 75}
    assert target_budgets(1000, ["x", "y"], 0.3, {"y": 0}) == {"x": 300, "y": 0}
    # 0.29 * 100 is 28.999999999999996 in floating point; the budget is still 29
    assert target_budgets(100, ["x"], 0.29) == {"x": 29}


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("fraction", [0, 0.0, 1.5, -0.2])
def test_bad_fraction_raises(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        target_budgets(100, ["t"], fraction)
    with pytest.raises(ValueError, match="fraction"):
        select_under_budget([0.5], [3], ["a"], ["t"], fraction)


@pytest.mark.parametrize(
    ("targets", "weights", "match"),
    [
        (["t", "u"], {"v": 1.0}, "unknown"),
        (["t", "u"], {"t": 0, "u": 0.0}, "sum > 0"),
        (["t", "u"], {"t": -1.0, "u": 2.0}, ">= 0"),
        ([], None, "no targets"),
    ],
    ids=["unknown-key", "all-zero", "negative", "no-targets"],
)
def test_bad_targets_or_weights_raise(targets, weights, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        target_budgets(100, targets, 0.2, weights)
    batch = ScoredBatch(np.zeros((2, len(targets))), np.array([1, 2]), np.array(["a", "b"]))
    with pytest.raises(ValueError, match=match):
        find_cutoffs(lambda: [batch], targets, 0.2, weights)


def test_score_columns_must_match_targets() -> None:
    with pytest.raises(ValueError, match="2 targets"):
        select_under_budget(np.zeros((3, 1)), [1, 1, 1], ["a", "b", "c"], ["t", "u"])
