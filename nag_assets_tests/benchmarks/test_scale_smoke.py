"""Smoke test of benchmarks/scale.py: its --quick mode runs in a subprocess (as it is run by
hand; it starts a process per measured step itself) and prints one JSON object with every
key the README's figures come from (never timings: those belong to benchmarks/README.md)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~30 s: a dozen Python processes

REPO = Path(__file__).resolve().parents[2]
STEP_KEYS = {
    "seconds",
    "seconds_per_1e5_docs",
    "cpu_s",
    "cpu_s_per_1e5_docs",
    "peak_rss_mb",
    "rss_before_step_mb",
    "extra_mb_per_1e5_docs",
    "load_1m",
    "facts",
}


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def test_scale_quick() -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--quick"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["benchmark"] == "scale" and r["machine"]["cores"] >= 1
    [config] = r["configs"]
    assert (config["docs"], config["shards"]) == (2000, 4)
    steps = config["steps"]
    assert set(steps) == {"shard_scores", "manifest", "corpus_w1", "corpus_w2", "corpus_check"}
    for step in steps.values():
        assert set(step) >= STEP_KEYS
        assert all(finite(step[k]) for k in STEP_KEYS - {"facts"})
        assert step["peak_rss_mb"] >= step["rss_before_step_mb"] > 0
    assert steps["shard_scores"]["facts"]["documents"] == 2000
    assert steps["corpus_w1"]["facts"] == {"parts": 4, "reused": 0, "workers": 1}
    assert steps["corpus_check"]["facts"]["bad_rows"] == 0
    assert set(config["corpus_scaling"]) == {"w2_vs_w1"}
    new = config["new_shard"]
    assert new["docs"] == 500 and set(new["steps"]) == {"shard_scores", "manifest", "corpus"}
    assert new["parts"] == 5 and new["parts_reused"] + new["parts_rewritten"] == 5
    assert new["steps"]["shard_scores"]["facts"]["documents"] == 500
    manifest = r["manifest_scale"]
    assert [p["rows"] for p in manifest["points"]] == [2000, 20000]
    assert set(manifest["extrapolated_1e8"]) == {"linear", "proportional"}
    assert isinstance(manifest["target_met"], bool)
    targets = r["summary"]["targets"]
    assert {"manifest_1e8_within_2min_2gib", "corpus_w2_vs_w1_ge_1_7"} <= set(targets)
    assert {"new_shard_parts_rewritten", "new_shard_parts_reused"} <= set(targets)
    assert set(r["summary"]["seconds_per_1e5_docs"]) == {"2000x4"}
