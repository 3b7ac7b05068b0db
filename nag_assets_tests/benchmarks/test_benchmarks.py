"""Smoke tests of the benchmark scripts: each one's --quick mode runs and reports sane
numbers (never timings: those belong to benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_quick(name: str, capsys: pytest.CaptureFixture) -> dict:
    """Run benchmarks/<name>.py --quick in this process; check it printed one JSON object."""
    return run_quick_args(name, capsys, ["--quick"])


def run_quick_args(name: str, capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    """Run benchmarks/<name>.py with `argv` in this process; check it printed one JSON."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the scripts import their helper, _bench
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    result = module.main(argv)
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == json.loads(json.dumps(result))
    assert result["benchmark"] == name
    assert result["machine"]["cores"] >= 1
    return result


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_extraction(capsys) -> None:
    r = run_quick("extraction", capsys)
    assert r["tokens"] > 0 and r["docs"] == 24
    assert set(r["tokens_per_s"]) == {"nag", "naive", "trunk"}
    assert all(positive(v) for v in r["tokens_per_s"].values())
    assert positive(r["nag_vs_naive"]) and positive(r["nag_vs_trunk"])
    # the NAG pass stops before the last down-projection; the naive one adds the LM head
    params = r["params_per_token"]
    assert 0 < params["nag"] < params["trunk"] < params["naive"]
    assert positive(r["matmul_gflops"])
    assert all(positive(v) for v in r["flop_bound_tokens_per_s"].values())
    assert r["padded_tokens_per_token"]["sorted"] >= 1
    # fp32 and bf16 side by side, each against the FLOP bound of its own dtype
    assert {d: v["dtype"] for d, v in r["by_dtype"].items()} == {
        "fp32": "torch.float32",
        "bf16": "torch.bfloat16",
    }
    assert r["dtype"] in {"torch.float32", "torch.bfloat16"}
    for v in r["by_dtype"].values():
        assert all(positive(x) for x in v["tokens_per_s"].values())
        assert positive(v["matmul_gflops"])
        share = v["share_of_flop_bound"]["nag"]
        assert share == round(v["tokens_per_s"]["nag"] / v["flop_bound_tokens_per_s"]["nag"], 3)


def test_compiled(capsys) -> None:
    """~1 min: inductor compiles the tiny model's trunk."""
    r = run_quick("compiled", capsys)
    assert r["trunk_equals_hook"] is True  # the written-out trunk is the hook path, exactly
    assert set(r["tokens_per_s"]) == {"hook_fp32", "hook", "trunk", "compiled"}
    assert all(positive(v) for v in r["tokens_per_s"].values())
    assert positive(r["compile_s"]["compiled"]) and positive(r["flop_bound_tokens_per_s"])
    assert r["top5_overlap_with_fp32"]["trunk"] == r["top5_overlap_with_fp32"]["hook"]
    assert all(0.9 <= v <= 1 for v in r["top5_overlap_with_fp32"].values())
    assert r["profile"]["hook"][0]["share"] > 0
    assert r["graphs_compiled"] == {"compiled": 1}  # one graph for every batch shape
    assert 1 <= r["padding"]["to_longest"] <= r["padding"]["to_multiple_of_16"]


def test_compiled_variants(capsys) -> None:
    """~1 min more: two of the trunk's other compilations, beside the package's."""
    r = run_quick_args("compiled", capsys, ["--quick", "--variants", "math_attention,batch64"])
    assert set(r["tokens_per_s"]) == {"hook_fp32", "hook", "trunk", "compiled"} | {
        "math_attention",
        "batch64",
    }
    assert r["graphs_compiled"]["math_attention"] == 1 and "batch64" not in r["compile_s"]
    assert all(0.9 <= v <= 1 for v in r["top5_overlap_with_fp32"].values())


def test_scoring(capsys) -> None:
    r = run_quick("scoring", capsys)
    assert set(r["targets"]) == {"1", "8"}
    for row in r["targets"].values():
        assert all(positive(v) for v in row["scores_per_s"].values())
        # the fast path gives the float64 path's scores exactly, and the naive loop's closely
        assert row["identical_to_float64_bag"] == 1.0
        assert row["max_abs_diff_numpy_loop"] < 1e-6
        low, high = row["score_range"]
        assert 0 <= low <= row["mean_score"] <= high <= 1
        assert row["peak_extra_mib"] >= 0


def test_selection(capsys) -> None:
    r = run_quick("selection", capsys)
    assert set(r["sizes"]) == {"100000", "400000"}
    for docs, row in r["sizes"].items():
        assert row["matches_global_sort"] is True
        assert row["shards"] == int(docs) // r["shard_docs"]
        # 20% of the tokens, split over two targets: about a tenth of the documents each
        assert all(0.05 * int(docs) < k < 0.2 * int(docs) for k in row["kept_documents"])
        assert positive(row["docs_per_s"]) and positive(row["peak_rss_mib"])


def test_incremental(capsys) -> None:
    r = run_quick("incremental", capsys)
    assert all(r["checks"].values()), r["checks"]
    first, nothing = r["phases"]["first"], r["phases"]["nothing"]
    assert first["forward_passes"] > 0 and first["texts"] >= r["docs"]
    assert nothing["runs"] == 0 and nothing["texts"] == 0
    assert r["phases"]["add_target"]["texts"] > 0


def test_end_to_end(capsys) -> None:
    r = run_quick("end_to_end", capsys)
    assert r["failed_runs"] == 0 and r["runs"] > 0
    assert r["texts"] >= r["docs"] and r["forward_passes"] > 0
    assert 0 < r["backbone_s"] <= r["wall_s"]
    assert r["other_s"] == pytest.approx(r["wall_s"] - r["backbone_s"], abs=0.2)
    assert {"target_nag", "shard_nag", "selected_mixture"} <= set(r["step_s"])


@pytest.mark.slow
def test_ray_scaling(capsys, ray_cluster) -> None:
    """On the session's local cluster (--address), the tiny model: in-process beside 1 and 2
    CPU actors, every method timed, and no model load while the shards were timed."""
    r = run_quick_args("ray_scaling", capsys, ["--quick", "--address", ray_cluster.address])
    methods = {"in_process", "ray_1_actor", "ray_2_actors"}
    assert set(r["tokens_per_s"]) == set(r["overhead_per_shard_s"]) == methods
    assert all(positive(v) for v in r["tokens_per_s"].values())
    assert r["nag_tokens"] > 0 and positive(r["driver_process_s"])
    assert r["model_loads"]["ray_2_actors"] == {"actors": 2, "loads_while_timed": 0}


def test_streaming(capsys) -> None:
    r = run_quick("streaming", capsys)
    assert [row["docs"] for row in r["sizes"]] == [500, 1500]
    for row in r["sizes"]:
        assert row["peak_rss_mib"] >= row["rss_before_step_mib"] > 0
        assert 0 < row["share_tokenize"] < 1 and 0 <= row["share_parse"] < 1
        assert row["padding"]["chunk_sorted"] >= row["padding"]["shard_sorted"] >= 1
    assert positive(r["peak_largest_vs_second"])


def test_dtype_selection(capsys) -> None:
    r = run_quick("dtype_selection", capsys)
    assert set(r["jaccard_bf16_vs_fp32"]) == {"hellaswag", "arc_easy"}
    assert all(0 <= j <= 1 for j in r["jaccard_bf16_vs_fp32"].values())
    assert 0 < r["nag_overlap_bf16_vs_fp32"] <= 1
    assert all(n > 0 for sel in r["selected"].values() for n in sel.values())


def test_distilled(capsys) -> None:
    r = run_quick("distilled", capsys)
    assert r["pool"]["documents"] == 60 and r["pool"]["shards"] == 2
    for row in r["by_sample_fraction"].values():
        for t in ("arc_easy", "hellaswag"):
            assert 0 <= row[t]["jaccard_min"] <= row[t]["jaccard_mean"] <= 1
        assert all(0 < run["sample_documents"] < 60 for run in row["runs"])
    assert set(r["models_at_10pct"]) == {
        "ridge:tokens+words",
        "ridge:tokens",
        "ridge:words",
        "fasttext",
    }
    assert all(positive(v) for v in r["speed"]["documents_per_s_per_core"].values())
    assert positive(r["speed"]["cpu_cost_ratio"])
    assert positive(r["speed"]["cpu_cost_ratio_step"])
    assert set(r["speed"]["documents_per_s_per_core"]) == {
        "backbone",
        "distilled",
        "distilled_step",
    }


def test_quality(capsys) -> None:
    r = run_quick("quality", capsys)
    assert set(r["rankers"]) == {
        "random",
        "dsir",
        "embedding",
        "nag",
        "nag (tuned, the default)",
        "nag_contrastive",
    }
    assert len(r["variants_by_dev"]) == 3 * 2 * 1 * 3 * 3  # neurons x impact x K x layers x profile
    assert r["chosen_on_dev"] == r["variants_by_dev"][0]["variant"]
    lifts = [x for v in r["rankers"].values() for x in v["per_target"].values()]
    assert all(math.isfinite(x) and x >= 0 for x in lifts)


def test_quality_second_pool(capsys) -> None:
    r = run_quick_args("quality", capsys, ["--quick", "--pool-set", "b"])
    assert r["chosen_on_dev"] is None  # pool b is held out whole: nothing is chosen on it
    assert {t["split"] for t in r["targets"]} == {"heldout"}
    assert all(
        set(v) == {"heldout_mean", "heldout_worst", "per_target"} for v in r["rankers"].values()
    )


def test_hybrid(capsys) -> None:
    r = run_quick("hybrid", capsys)
    assert set(r["chosen_on_dev"]) == {"anchored", "rank", "pool_z"}
    for name, by_pool in r["rankers"].items():
        assert set(by_pool) == {"a", "b"}, name
        for stats in by_pool.values():
            assert stats["heldout_worst"] <= stats["heldout_mean"]
            assert all(math.isfinite(x) and x >= 0 for x in stats["per_target"].values())
    assert all(positive(x) for x in r["documents_per_cpu_second"].values())


def test_distilled_ceiling(capsys) -> None:
    r = run_quick("distilled_ceiling", capsys)
    assert r["documents"] == 60 and r["layers"] >= 2
    for t in ("arc_easy", "hellaswag"):
        assert -1 <= r["distilled"][t]["spearman"] <= 1
        assert 0 <= r["target_halves_jaccard"][t] <= 1
        assert 0 <= r["layer_subsets"]["even_vs_odd_jaccard"][t] <= 1
    shares = [row["backbone_share"] for row in r["cascade"].values()]
    assert shares == sorted(shares) and 0 < shares[0] <= shares[-1] <= 1  # more read as X grows
    assert all(0 <= row["arc_easy"] <= 1 for row in r["cascade"].values())
