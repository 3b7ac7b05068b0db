"""The whole graph and the pool sensor against a real S3-compatible server (moto on loopback):
every input, intermediate asset and the selected corpus live in the bucket, and the result is
byte-identical to a run on local disk."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import s3fs

from nag_assets.defs.resources import StorageResource
from nag_assets.pipeline.mixture import FOLDER, POINTER, mixture_digest, read_mixture
from nag_assets.pipeline.shards import read_shard
from nag_assets.pipeline.watch import scan
from nag_assets.sources.wiki import write_shards
from nag_assets.storage import ChangedWhileReading, Storage, partition_key
from nag_assets_tests.defs.helpers import build_root, expected_selection, pairs, science_texts
from nag_assets_tests.faults.helpers import StorageGraph, plain_run
from nag_assets_tests.s3.conftest import S3

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

SHARDS = ["wiki-000", "wiki-001", "wiki-002"]
TARGETS = {"water": science_texts(12), "fire": science_texts(10, "fire")}
PREFIX = "pool/v1"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_endpoint_from_environment_or_from_resource_config(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.bucket()
    for how in ("environment", "config"):
        s3fs.S3FileSystem.clear_instance_cache()  # no client made for the other way survives
        if how == "environment":
            monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
            resource = StorageResource(root=f"s3://{bucket}/{how}")
        else:
            monkeypatch.delenv("AWS_ENDPOINT_URL")
            resource = StorageResource(root=f"s3://{bucket}/{how}", endpoint_url=s3.endpoint)
        store = resource.storage()
        assert not store.is_local
        store.write_bytes(b"written", "shards", "a.jsonl")  # a write ...
        assert store.read_bytes("shards", "a.jsonl") == b"written"  # ... and reads
        assert store.read_whole(store.path("shards", "a.jsonl")) == b"written"
        (info,) = store.list_files("shards")
        assert store.content_version(info) == f"etag:{_md5(b'written')}"
        # the object really is on the server
        assert s3.client.get_object(Bucket=bucket, Key=f"{how}/shards/a.jsonl")["Body"].read() == (
            b"written"
        )


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory: pytest.TempPathFactory, wiki_pool: pl.DataFrame) -> Path:
    return build_root(
        tmp_path_factory.mktemp("s3-inputs") / "root",
        wiki_pool,
        shards=3,
        docs_per_shard=20,
        targets=TARGETS,
    )


@pytest.fixture(scope="module")
def graph(s3: S3, local_inputs: Path, tiny_model_dir: Path):
    """The graph over s3://<bucket>/pool/v1, endpoint from the resource config."""
    bucket = s3.bucket()
    s3.upload(local_inputs, bucket, PREFIX)
    resource = StorageResource(root=f"s3://{bucket}/{PREFIX}", endpoint_url=s3.endpoint)
    with dg.DagsterInstance.ephemeral() as instance:
        g = StorageGraph(resource, tiny_model_dir, instance)
        g.bucket = bucket
        first, _ = g.evaluate_sensor()
        g.first_observations = {
            e.partition: e.tags["dagster/data_version"] for e in first.asset_events or []
        }
        g.step()
        yield g


def test_whole_graph_runs_on_s3(graph: StorageGraph, s3: S3, local_inputs: Path) -> None:
    assert graph.runs and all(r["success"] for r in graph.runs), graph.runs
    assert graph.partitions("shards") == SHARDS
    assert graph.partitions("targets") == sorted(TARGETS)
    keys = s3.keys(graph.bucket, PREFIX)
    for expected in [
        *(f"assets/shard_nag/{s}.parquet" for s in SHARDS),
        *(f"assets/shard_scores/{s}.parquet" for s in SHARDS),
        *(f"assets/target_dataset/{t}.parquet" for t in TARGETS),
        *(f"assets/target_nag/{t}.parquet" for t in TARGETS),
        *(f"assets/target_nag/{t}.profile.npy" for t in TARGETS),
        f"{FOLDER}/{POINTER}",
    ]:
        assert expected in keys
    assert not any(".tmp-" in k for k in keys)
    # the shards' data versions are the objects' ETags (MD5 of a single PUT)
    assert graph.first_observations == {
        s: f"etag:{_md5((local_inputs / 'shards' / f'{s}.parquet').read_bytes())}" for s in SHARDS
    }
    # nothing landed on local disk under a name made from the URL
    assert not Path("s3:").exists() and not Path(graph.bucket).exists()


def test_selection_on_s3_is_byte_identical_to_local(
    graph: StorageGraph, local_inputs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    mix = read_mixture(graph.storage)
    scores = pl.concat(
        [
            graph.storage.read_parquet("assets/shard_scores", f"{s}.parquet").with_columns(
                shard=pl.lit(s)
            )
            for s in SHARDS
        ]
    )
    assert pairs(mix) == expected_selection(scores, sorted(TARGETS))
    local = tmp_path / "local"
    for folder in ("targets", "shards"):
        shutil.copytree(local_inputs / folder, local / folder)
    assert mixture_digest(graph.storage) == plain_run(Storage(str(local)), tiny_model_dir)
    assert graph.check_evaluations()[("mixture_corpus", "rows_point_to_documents")] == [True]


def _requested(result: dg.SensorResult) -> list[tuple[str, str | None]]:
    return sorted(
        (r.asset_selection[0].to_user_string(), r.partition_key) for r in result.run_requests or []
    )


def test_pool_sensor_on_s3(graph: StorageGraph, s3: S3, local_inputs: Path) -> None:
    """Re-uploading the same bytes requests nothing; new bytes request their own shard; a
    removed object removes its partition and rebuilds the mixture; a lost cursor redoes
    nothing. The mixture's pointer and old-version cleanup work on S3 too."""
    bucket, shards = graph.bucket, local_inputs / "shards"
    put = s3.client.put_object
    put(Bucket=bucket, Key=f"{PREFIX}/shards/wiki-001.parquet",
        Body=(shards / "wiki-001.parquet").read_bytes())  # fmt: skip
    result, _ = graph.evaluate_sensor()
    assert not result.run_requests and not result.dynamic_partitions_requests

    # a lost cursor: ETags are hashed once against the recorded content hashes, nothing rerun
    lost, _ = graph.evaluate_sensor(cursor="")
    assert not lost.run_requests

    # new content for one shard: only that shard is requested, downstream follows
    changed = pl.read_parquet(shards / "wiki-001.parquet").head(12)
    changed_dir = local_inputs.parent / "changed"
    write_shards(changed, changed_dir, 1, prefix="wiki-001")
    new_bytes = (changed_dir / "wiki-001-000.parquet").read_bytes()
    put(Bucket=bucket, Key=f"{PREFIX}/shards/wiki-001.parquet", Body=new_bytes)
    result, _ = graph.evaluate_sensor()
    assert _requested(result) == [("shard_nag", "wiki-001")]
    assert {e.partition: e.tags["dagster/data_version"] for e in result.asset_events} == {
        "wiki-001": f"etag:{_md5(new_bytes)}"
    }
    old_version = json.loads(graph.storage.read_bytes(FOLDER, POINTER))["version"]
    sensor_runs, auto_runs = graph.step()
    assert all(r["success"] for r in sensor_runs + auto_runs)
    assert (
        read_mixture(graph.storage)
        .filter(shard="wiki-001")["id"]
        .is_in(changed["id"].to_list())
        .all()
    )
    middle = json.loads(graph.storage.read_bytes(FOLDER, POINTER))["version"]

    # removing an object removes its partition and rebuilds the mixture without it
    s3.client.delete_object(Bucket=bucket, Key=f"{PREFIX}/shards/wiki-002.parquet")
    sensor_runs, auto_runs = graph.step()
    assert [r["assets"] for r in sensor_runs] == [["selected_mixture"]]
    assert all(r["success"] for r in sensor_runs + auto_runs)
    assert graph.partitions("shards") == ["wiki-000", "wiki-001"]
    pointer = json.loads(graph.storage.read_bytes(FOLDER, POINTER))
    assert pointer["version"] != old_version
    assert set(read_mixture(graph.storage)["shard"]) <= {"wiki-000", "wiki-001"}
    # left in the bucket: the version the pointer names and the one before it, not older
    names = {k.split("/")[1] for k in s3.keys(bucket, PREFIX) if k.startswith(f"{FOLDER}/")}
    assert {POINTER, "CORPUS.json"} <= names  # the selection and the corpus in force
    versions = {n.removesuffix(".json").removesuffix(".manifest") for n in names}
    versions -= {"CURRENT", "CORPUS"}  # each version: its parts, manifest and facts
    assert versions == {middle, pointer["version"]} and old_version not in versions


def test_object_replaced_while_read_is_read_again_whole(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.bucket()
    store = Storage(f"s3://{bucket}/r", {"client_kwargs": {"endpoint_url": s3.endpoint}})
    old = b'{"text": "old version"}\n'
    store.write_bytes(old, "shards", "a.jsonl")
    new = b'{"text": "the new version, whole"}\n'
    real = s3fs.core.S3File._fetch_range
    replacements, reads = [new], []

    def replaced_first(self, start, end):
        reads.append(self.details["ETag"])
        if replacements:  # another writer replaces the object between open and read
            s3.client.put_object(Bucket=bucket, Key="r/shards/a.jsonl", Body=replacements.pop())
        return real(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", replaced_first)
    name, data, _ = read_shard(store, "a")
    assert (name, data) == ("a.jsonl", new)
    # the first read was pinned to the old ETag and refused; the second read the new object
    assert reads == [f'"{_md5(old)}"', f'"{_md5(new)}"']

    # an object replaced on every read never settles: a clear error, nothing returned mixed
    replacements.extend([b"v%d\n" % i for i in range(5)])
    with pytest.raises(ChangedWhileReading, match="changed while being read"):
        store.read_whole(store.path("shards", "a.jsonl"))


def test_nested_pool_on_s3_is_listed_and_keyed(s3: S3) -> None:
    """A pool uploaded as downloaded (dump folders, a file name in each) lists recursively on
    S3 as on disk; hidden folders are skipped; each file is found again by its key."""
    bucket = s3.bucket()
    layout = {
        "shards/CC-MAIN-2024-10/000_00000.jsonl": b'{"text": "a"}\n',
        "shards/CC-MAIN-2024-18/000_00000.jsonl": b'{"text": "b"}\n',
        "shards/flat.jsonl": b'{"text": "c"}\n',
        "shards/.staging/x.jsonl": b'{"text": "d"}\n',
    }
    for key, body in layout.items():
        s3.client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=body)
    store = StorageResource(root=f"s3://{bucket}/{PREFIX}", endpoint_url=s3.endpoint).storage()
    listed = store.list_files("shards", recursive=True)
    names = ["CC-MAIN-2024-10/000_00000.jsonl", "CC-MAIN-2024-18/000_00000.jsonl", "flat.jsonl"]
    assert [f.name for f in listed] == names
    assert [f.etag for f in listed] == [_md5(layout[f"shards/{n}"]) for n in names]
    found = scan(store, "shards", {})
    assert found.added == [partition_key(n) for n in names] and not found.rejected
    for n in names:
        assert read_shard(store, partition_key(n))[:2] == (n, layout[f"shards/{n}"])
