"""shard_nag on a real local Ray cluster against the in-process path: byte-identical tables
(local root and S3), the same skipping and bad-input messages, many shards with one model
load per actor, later runs (other processes) reusing the same actors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from nag_assets.defs.resources import StorageResource
from nag_assets.nag import load_backbone
from nag_assets.pipeline import shards
from nag_assets.pipeline.common import NagSettings
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, partition_key
from nag_assets_tests.executors.cluster import LocalCluster
from nag_assets_tests.executors.conftest import make_extractor
from nag_assets_tests.s3.conftest import S3

pytestmark = pytest.mark.slow

SETTINGS = NagSettings(top_k=4, batch_size=8, chunk_rows=7)
FILES = [
    "web-000.parquet",
    "web-001.jsonl",
    "web-002.jsonl.gz",
    "CC-MAIN-2024-10/000_00000.parquet",
    "CC-MAIN-2024-18/000_00000.jsonl",
]


def write_pool(root: Path, docs: pl.DataFrame, files: list[str], per_file: int = 24) -> Path:
    """`files` under root/shards, each `per_file` documents (parquet in row groups of 10, so
    chunks of 7 rows are cut at row-group ends too)."""
    for i, name in enumerate(files):
        part = docs.slice(i * per_file, per_file)
        path = root / "shards" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".parquet"):
            pq.write_table(part.to_arrow(), path, row_group_size=10)
        else:
            lines = "".join(json.dumps(r) + "\n" for r in part.iter_rows(named=True)).encode()
            path.write_bytes(gzip.compress(lines, mtime=0) if name.endswith(".gz") else lines)
    return root


def keys(files: list[str]) -> list[str]:
    return [partition_key(f) for f in files]


def outputs(root: Path, files: list[str]) -> dict[str, bytes]:
    return {k: (root / "assets/shard_nag" / f"{k}.parquet").read_bytes() for k in keys(files)}


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, docs: pl.DataFrame, tiny_model_dir: Path
) -> tuple[Path, dict[str, bytes], dict[str, dict]]:
    """The in-process run over the pool: (root, table bytes, step facts) per shard."""
    root = write_pool(tmp_path_factory.mktemp("in-process"), docs, FILES)
    backbone = load_backbone(str(tiny_model_dir), device="cpu")
    store = Storage(str(root))
    facts = {k: shards.shard_nag(store, k, backbone, SETTINGS).facts for k in keys(FILES)}
    return root, outputs(root, FILES), facts


def _copy_inputs(reference_root: Path, to: Path) -> Path:
    shutil.copytree(reference_root / "shards", to / "shards")
    return to


def test_ray_tables_are_byte_identical_and_one_load_per_actor(
    fresh_pool: LocalCluster, reference, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ref_root, ref_bytes, ref_facts = reference
    root = _copy_inputs(ref_root, tmp_path)
    store = Storage(str(root))
    extractor = make_extractor(fresh_pool, tiny_model_dir, actors=2)
    backbone = extractor.backbone()
    before = {w.name: w.pid for w in extractor.workers()}
    progress: list[tuple[int, int, int]] = []
    for k in keys(FILES):
        step = shards.shard_nag(
            store, k, backbone, SETTINGS, lambda *a: progress.append(a), extractor
        )
        assert not step.skipped and step.facts == ref_facts[k]
    assert outputs(root, FILES) == ref_bytes
    workers = extractor.workers()
    # many shards in one go: every actor loaded the model once and did part of the work
    assert {w.name: w.pid for w in workers} == before and len(workers) == 2
    assert all(w.loads == 1 and not w.restarted and w.chunks > 0 for w in workers)
    planned = sum(len(shards.plan_shard(store, k, 7).chunks) for k in keys(FILES))
    assert sum(w.chunks for w in workers) == planned == 3 * 4 + 2 * 5  # JSONL 4, parquet 5
    assert progress[-1][:2] == (24, 24)  # the last file's last report: all its documents
    # current outputs are skipped, by Ray and in-process alike
    assert shards.shard_nag(store, keys(FILES)[0], backbone, SETTINGS, None, extractor).skipped


def test_bad_shard_among_good_ones_fails_alone_with_the_in_process_message(
    ray_cluster: LocalCluster, reference, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ref_root, ref_bytes, _ = reference
    root = _copy_inputs(ref_root, tmp_path)
    bad = root / "shards/web-001.jsonl"
    lines = bad.read_text().splitlines()
    lines[17] = '{"id": "x", "text": 5}'  # line 18: in the third chunk, not the first
    bad.write_text("\n".join(lines) + "\n")
    store = Storage(str(root))
    local = load_backbone(str(tiny_model_dir), device="cpu")
    with pytest.raises(InputError) as in_process:
        shards.shard_nag(store, "web-001", local, SETTINGS)
    extractor = make_extractor(ray_cluster, tiny_model_dir, actors=2)
    backbone = extractor.backbone()
    results = {}
    for k in keys(FILES):
        try:
            results[k] = shards.shard_nag(store, k, backbone, SETTINGS, None, extractor)
        except InputError as e:
            results[k] = e
    assert str(results.pop("web-001")) == str(in_process.value)
    assert "web-001.jsonl: line 18" in str(in_process.value)
    assert not (root / "assets/shard_nag/web-001.parquet").exists()
    good = [f for f in FILES if f != "web-001.jsonl"]
    assert all(not r.skipped for r in results.values())
    assert outputs(root, good) == {k: ref_bytes[k] for k in keys(good)}


def test_ray_on_s3_is_byte_identical(
    ray_cluster: LocalCluster, reference, tiny_model_dir: Path, s3: S3
) -> None:
    """The workers read the chunks from the S3 server themselves (their own credentials);
    the step writes the table to the bucket."""
    ref_root, ref_bytes, _ = reference
    bucket = s3.bucket()
    s3.upload(ref_root / "shards", bucket, "pool/shards")
    store = StorageResource(root=f"s3://{bucket}/pool", endpoint_url=s3.endpoint).storage()
    extractor = make_extractor(ray_cluster, tiny_model_dir, actors=2)
    backbone = extractor.backbone()
    for k in keys(FILES):
        shards.shard_nag(store, k, backbone, SETTINGS, None, extractor)
    got = {
        k: s3.client.get_object(Bucket=bucket, Key=f"pool/assets/shard_nag/{k}.parquet")[
            "Body"
        ].read()
        for k in keys(FILES)
    }
    assert got == ref_bytes


LATER_RUN = """
import json, sys
from nag_assets.executors import ExecutorSettings
from nag_assets.executors.ray import RayExtractor
from nag_assets.pipeline import shards
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets.storage import Storage
address, model, root, key = sys.argv[1:]
settings = ExecutorSettings(executor="ray", ray_address=address, actors=2)
ex = RayExtractor(settings, BackboneSpec(model, "cpu", None))
step = shards.shard_nag(
    Storage(root), key, ex.backbone(), NagSettings(top_k=4, batch_size=8, chunk_rows=7), None, ex
)
print(json.dumps({"skipped": step.skipped, "pids": sorted(w.pid for w in ex.workers())}))
"""


def test_a_later_run_in_another_process_reuses_the_actors(
    ray_cluster: LocalCluster, reference, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """What a Dagster run per partition does: a new process, a connect, no model load."""
    ref_root, ref_bytes, _ = reference
    root = _copy_inputs(ref_root, tmp_path)
    extractor = make_extractor(ray_cluster, tiny_model_dir, actors=2)
    pids = sorted(w.pid for w in extractor.workers())
    key = partition_key(FILES[3])
    out = subprocess.run(
        [sys.executable, "-c", LATER_RUN, ray_cluster.address, str(tiny_model_dir), str(root), key],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"skipped": False, "pids": pids}
    assert (root / "assets/shard_nag" / f"{key}.parquet").read_bytes() == ref_bytes[key]
    assert all(w.loads == 1 for w in extractor.workers())


def test_compile_travels_to_the_actors(
    fresh_pool: LocalCluster, docs: pl.DataFrame, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """compile=True under Ray: the actors load the compiled backbone from the spec (its own
    fingerprint) and write the table the in-process compiled path writes."""
    from nag_assets.executors import ExecutorSettings
    from nag_assets.executors.ray import RayExtractor
    from nag_assets.pipeline.extractor import BackboneSpec

    files, spec = FILES[:1], BackboneSpec(str(tiny_model_dir), "cpu", None, compile=True)
    local_root = write_pool(tmp_path / "local", docs, files)
    local = spec.load()
    shards.shard_nag(Storage(str(local_root)), keys(files)[0], local, SETTINGS)
    root = write_pool(tmp_path / "ray", docs, files)
    extractor = RayExtractor(
        ExecutorSettings(executor="ray", ray_address=fresh_pool.address, actors=1), spec
    )
    backbone = extractor.backbone()
    hook = load_backbone(str(tiny_model_dir), device="cpu")
    assert backbone.fingerprint == local.fingerprint != hook.fingerprint
    shards.shard_nag(Storage(str(root)), keys(files)[0], backbone, SETTINGS, None, extractor)
    assert outputs(root, files) == outputs(local_root, files)
    assert [w.loads for w in extractor.workers()] == [1]
