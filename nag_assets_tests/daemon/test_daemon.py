"""The real daemons, end to end, on a real Postgres server (deploy/ as a user runs it).

Nothing here drives the graph: files are dropped into the storage root and the test waits,
bounded, for Dagster's own daemon (pool_sensor, the declarative automation, the run queue and
the `backbone` pool) to do the rest. The phases build on each other (module fixtures):
1. two targets and three shards -> the mixture, equal to an independent selection;
2. a fourth shard -> only its shard_nag and shard_scores, then the mixture;
3. a fifth (slowed) shard, then a bad shard while the fifth holds the backbone pool; the
   daemon is killed mid-extraction of the fifth, then its run worker too; the daemon is
   started again -> the run is retried once, the bad shard fails alone and is left out, and
   the mixture equals an uninterrupted run's."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.pipeline.mixture import mixture_digest, read_mixture
from nag_assets.sources.wiki import load_wiki_leads
from nag_assets.storage import Storage
from nag_assets_tests.daemon.conftest import SLOW_SHARD
from nag_assets_tests.daemon.records import (
    ACTIVE,
    BACKBONE_STEPS,
    Run,
    backbone_intervals,
    current_facts,
    runs,
)
from nag_assets_tests.daemon.stack import Deployment, wait_until
from nag_assets_tests.defs.helpers import (
    ARC_SPEC,
    build_root,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
)
from nag_assets_tests.faults.helpers import failure_text, plain_run

pytestmark = pytest.mark.slow

TARGETS = {"arc_easy": ARC_SPEC, "water": science_texts(12)}
DOCS_PER_SHARD = 30
FIRST = ["wiki-000", "wiki-001", "wiki-002"]
FOURTH = "wiki-003"
BAD = "bad"
BAD_LINE = b'{"text": "fine"}\n{"text": "broken" "json"}\n'
QUIET_S = 20  # longer than the automation sensor's 15 s interval
PHASE_S = 600  # bound on each phase on a busy 2-core machine


@dataclass
class Phase:
    """What one phase left: the runs it caused and the mixture's facts once settled."""

    new_runs: list[Run]
    all_runs: list[Run]
    facts: dict
    seconds: float


@pytest.fixture(scope="module")
def staging(deployment: Deployment) -> Path:
    """Every input file, written outside the root; phases move them in (atomic renames)."""
    pool = load_wiki_leads(5 * DOCS_PER_SHARD)
    stage = build_root(deployment.root.parent / "staging", pool, 5, DOCS_PER_SHARD, TARGETS)
    (stage / "shards" / f"{BAD}.jsonl").write_bytes(BAD_LINE)
    return stage


def drop(staging: Path, root: Path, folder: str, *names: str) -> None:
    for name in names:
        (src,) = (staging / folder).glob(f"{name}.*")
        os.replace(src, root / folder / src.name)


def settle(
    instance: dg.DagsterInstance, deployment: Deployment, shards: list[str], left_out: set[str]
) -> tuple[list[Run], dict]:
    """Wait until the mixture in force covers `shards` and both targets, nothing is queued or
    running, and nothing new has started for QUIET_S seconds."""
    state: dict = {}

    def settled():
        facts = current_facts(deployment.root)
        now = runs(instance)
        ready = (
            facts is not None
            and sorted(facts["shards"]) == shards
            and set(facts["shards_left_out"]) == left_out
            and sorted(facts["targets"]) == sorted(TARGETS)
            and not facts["targets_left_out"]
            and not any(r.status in ACTIVE for r in now)
        )
        if not ready:
            state.clear()
            return None
        if state.get("count") != len(now):
            state.update(count=len(now), since=time.monotonic())
        return (now, facts) if time.monotonic() - state["since"] >= QUIET_S else None

    return wait_until(f"a settled mixture over {shards}", settled, PHASE_S, deployment)


def reference_digest(deployment: Deployment, shards: list[str]) -> str:
    """The same targets and shards through the plain steps, no Dagster, nothing killed."""
    root = deployment.root
    ref = root.parent / f"reference-{len(shards)}"
    for folder in ("targets", "shards"):
        (ref / folder).mkdir(parents=True)
    for f in (root / "targets").iterdir():
        shutil.copy(f, ref / "targets" / f.name)
    for s in shards:
        shutil.copy(root / "shards" / f"{s}.parquet", ref / "shards")
    return plain_run(Storage(str(ref)), deployment.model)


def note(deployment: Deployment, name: str, phase: Phase) -> Phase:
    """Each phase's time and runs, in test_artifacts/daemon/phases.jsonl (CI keeps no stdout)."""
    line = {"phase": name, "seconds": round(phase.seconds), "runs": made(phase.new_runs)}
    with (deployment.logs / "phases.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")
    return phase


def made(run_list: list[Run]) -> list[tuple[str, str | None]]:
    return sorted(m for r in run_list for m in r.materialized)


@pytest.fixture(scope="module")
def first(deployment: Deployment, instance: dg.DagsterInstance, staging: Path) -> Phase:
    start = time.monotonic()
    drop(staging, deployment.root, "targets", *TARGETS)
    drop(staging, deployment.root, "shards", *FIRST)
    done, facts = settle(instance, deployment, FIRST, set())
    return note(deployment, "first", Phase(done, done, facts, time.monotonic() - start))


@pytest.fixture(scope="module")
def fourth(deployment: Deployment, instance: dg.DagsterInstance, staging, first) -> Phase:
    start = time.monotonic()
    before = {r.run_id for r in first.all_runs}
    drop(staging, deployment.root, "shards", FOURTH)
    done, facts = settle(instance, deployment, [*FIRST, FOURTH], set())
    new = [r for r in done if r.run_id not in before]
    return note(deployment, "fourth", Phase(new, done, facts, time.monotonic() - start))


@dataclass
class Restart:
    phase: Phase
    killed_run: str
    worker_outlived_daemon: bool


@pytest.fixture(scope="module")
def restarted(deployment: Deployment, instance: dg.DagsterInstance, staging, fourth) -> Restart:
    """Drop the slow shard, and the bad one while the slow one's extraction holds the backbone
    pool (so the pool has a run to hold back); kill the daemon mid-extraction, then its run
    worker (a crash of both); start the daemon again and let everything settle."""
    start = time.monotonic()
    before = {r.run_id for r in fourth.all_runs}
    drop(staging, deployment.root, "shards", SLOW_SHARD)
    wait_until("the slow shard's extraction", deployment.slow_pid_file.exists, PHASE_S, deployment)
    drop(staging, deployment.root, "shards", BAD)

    def bad_run_requested():
        return any(r.partition == BAD for r in runs(instance))

    wait_until("a run for the bad shard", bad_run_requested, PHASE_S, deployment)
    deployment.kill("daemon")  # SIGKILL to its whole process group
    worker = int(deployment.slow_pid_file.read_text())
    time.sleep(2)
    alive = _alive(worker)  # the run belongs to the code server, not to the daemon
    os.kill(worker, signal.SIGKILL)
    (killed,) = [r for r in runs(instance) if r.partition == SLOW_SHARD]  # only shard_nag yet

    def marked_failed():
        run = instance.get_run_by_id(killed.run_id)
        return run.status == dg.DagsterRunStatus.FAILURE

    wait_until("the code server to mark the killed run failed", marked_failed, 60, deployment)
    deployment.start("daemon")
    done, facts = settle(instance, deployment, [*FIRST, FOURTH, SLOW_SHARD], {BAD})
    new = [r for r in done if r.run_id not in before]
    phase = note(deployment, "restart", Phase(new, done, facts, time.monotonic() - start))
    return Restart(phase, killed.run_id, alive)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sensor_and_automation_make_the_mixture(first: Phase, deployment) -> None:
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in first.new_runs)
    assert {r.origin for r in first.new_runs} <= {"pool_sensor", "nag_automation"}
    done = set(made(first.new_runs))
    assert {("target_nag", t) for t in TARGETS} <= done
    assert {("shard_nag", s) for s in FIRST} <= done
    assert {("shard_scores", s) for s in FIRST} <= done
    assert ("selected_mixture", None) in done
    mix = read_mixture(Storage(str(deployment.root)))
    expected = expected_selection(read_scores(deployment.root), sorted(TARGETS))
    assert expected and pairs(mix) == expected and mix.height == len(expected)
    digest = reference_digest(deployment, FIRST)
    assert mixture_digest(Storage(str(deployment.root))) == digest
    print(f"\nphase 1: {first.seconds:.0f}s, {len(first.new_runs)} runs: {made(first.new_runs)}")


def test_a_new_shard_runs_only_its_own_partitions(fourth: Phase) -> None:
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in fourth.new_runs)
    assert made(fourth.new_runs) == [
        ("mixture_corpus", None),  # eager: right after the selection (a cron would batch it)
        ("selected_mixture", None),
        ("shard_nag", FOURTH),
        ("shard_scores", FOURTH),
    ]
    order = {a: r.created for r in fourth.new_runs for a, _ in r.materialized}
    assert order["shard_nag"] < order["shard_scores"] < order["selected_mixture"]
    assert order["selected_mixture"] <= order["mixture_corpus"]  # after it, or in its run
    print(f"\nphase 2: {fourth.seconds:.0f}s, {len(fourth.new_runs)} runs")


def test_bad_shard_fails_alone_and_is_left_out(restarted: Restart, instance) -> None:
    phase = restarted.phase
    bad = [r for r in phase.new_runs if r.partition == BAD]
    assert [(r.assets, r.status) for r in bad] == [(("shard_nag",), dg.DagsterRunStatus.FAILURE)]
    assert f"{BAD}.jsonl: line 2 is not valid JSON" in failure_text(instance, bad[0].run_id)
    assert BAD in phase.facts["shards_left_out"]
    others = [r for r in phase.new_runs if r.partition != BAD and r.run_id != restarted.killed_run]
    assert others and all(r.status == dg.DagsterRunStatus.SUCCESS for r in others)


def test_killed_shard_run_is_retried_once_and_nothing_is_doubled(
    restarted: Restart, deployment: Deployment, instance: dg.DagsterInstance
) -> None:
    phase = restarted.phase
    assert restarted.worker_outlived_daemon, "killing the daemon took the run worker with it"
    slow = [r for r in phase.new_runs if (r.assets, r.partition) == (("shard_nag",), SLOW_SHARD)]
    killed, retries = slow[0], slow[1:]
    assert killed.run_id == restarted.killed_run
    assert killed.status == dg.DagsterRunStatus.FAILURE and killed.materialized == ()
    engine = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    assert any(f"Run execution process for {killed.run_id}" in e.message for e in engine)
    assert [(r.origin, r.status, r.parent_run_id) for r in retries] == [
        ("retry", dg.DagsterRunStatus.SUCCESS, killed.run_id)
    ], [(r.origin, r.status, r.parent_run_id, r.tags) for r in retries]
    assert killed.tags["dagster/auto_retry_run_id"] == retries[0].run_id
    # Each new partition materialized once; nothing else re-ran.
    assert made(phase.new_runs) == [
        ("mixture_corpus", None),
        ("selected_mixture", None),
        ("shard_nag", SLOW_SHARD),
        ("shard_scores", SLOW_SHARD),
    ]
    nags = pl.read_parquet(deployment.root / "assets" / "shard_nag" / f"{SLOW_SHARD}.parquet")
    assert nags.height == DOCS_PER_SHARD and nags["id"].n_unique() == DOCS_PER_SHARD
    good = [*FIRST, FOURTH, SLOW_SHARD]
    mix = read_mixture(Storage(str(deployment.root)))
    expected = expected_selection(read_scores(deployment.root, good), sorted(TARGETS))
    assert pairs(mix) == expected and mix.height == len(expected)
    digest = reference_digest(deployment, good)
    assert mixture_digest(Storage(str(deployment.root))) == digest
    print(f"\nphase 3: {phase.seconds:.0f}s, {len(phase.new_runs)} runs")


def test_backbone_pool_never_runs_two_steps_at_once(restarted: Restart) -> None:
    all_runs = restarted.phase.all_runs
    steps = backbone_intervals(all_runs)
    assert len(steps) >= len(TARGETS) + 6  # 2 targets, 5 good shards, the bad one, the retry
    for (_, end, what), (start, _, after) in itertools.pairwise(steps):
        assert end <= start, f"{what} still running when {after} started"
    # The pool had work to hold back: a backbone run was queued while another's step ran.
    backbone_runs = [r for r in all_runs if any(s.key in BACKBONE_STEPS for s in r.steps)]
    assert any(s < r.created < e for r in backbone_runs for s, e, _ in steps), "no contention"


def test_webserver_reads_the_same_instance(restarted: Restart, deployment, instance) -> None:
    query = """{ assetOrError(assetKey: {path: ["selected_mixture"]}) { ... on Asset {
        assetMaterializations(limit: 1) { runId } } } }"""
    latest = deployment.graphql(query)["assetOrError"]["assetMaterializations"][0]["runId"]
    record = instance.fetch_materializations(dg.AssetKey("selected_mixture"), limit=1).records[0]
    assert latest == record.run_id
