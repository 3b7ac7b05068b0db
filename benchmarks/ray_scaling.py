"""shard_nag in-process beside Ray with 1 and 2 CPU actors, over the same shards, one run.

Prints one JSON object:
  tokens_per_s            per method, over all shards (NAG tokens the backbone read)
  overhead_per_shard_s    per method, a one-document shard: planning, dispatch, the write
  startup_s               per method, once: loading the model (in-process) or starting the
                          actor pool (each actor loads it); not in the rates
  model_loads             per Ray method: loads during the timed shards (0: the actors kept
                          the model) and actors alive
  driver_process_s        a new process (what a Dagster run per partition is) that imports
                          the package, connects and extracts the one-document shard on the
                          running actors: the per-run cost beyond Dagster's own run start
  driver_cpu_share        per Ray method: the driver's CPU seconds over the wall seconds (on
                          2 cores, CPU the driver takes is CPU the actors cannot have)
Shards are timed interleaved and round by round (the order rotates), each keeping its
fastest round (_bench.interleaved). Chunks are `--chunk-rows` documents, so each shard has
several: the unit that the actors share. A local cluster (`ray start --head`, all cores)
is started for the run and stopped after, unless --address names one.

    python benchmarks/ray_scaling.py [--shards 4] [--docs 120] [--chunk-rows 30]
        [--rounds 2] [--model embedded] [--address HOST:PORT] [--gpu] [--quick]

--gpu: one GPU actor (gpus_per_actor=1) beside the in-process run on this machine's device.
--qwen3-shape: the model is Qwen3-1.7B's shape (28 layers, hidden 2048, d_ff 6144, GQA 16/8
heads) with random weights, built from its config (no download) with the embedded model's
tokenizer (so a smaller vocabulary: the embedding is a lookup, the LM head is never run).
--quick: a tiny random model on 2 shards of 12 texts (the smoke test; seconds once Ray is up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench
import pyarrow.parquet as pq
import torch

from nag_assets.executors import ExecutorSettings
from nag_assets.executors.ray import RayExtractor, connect, disconnect, stop_pool
from nag_assets.nag import load_backbone
from nag_assets.pipeline import shards as steps
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets.sources.wiki import load_wiki_leads
from nag_assets.storage import Storage

LATER_RUN = """
import sys, time
start = time.perf_counter()
from nag_assets.executors import ExecutorSettings
from nag_assets.executors.ray import RayExtractor
from nag_assets.pipeline import shards
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets.storage import Storage
address, model, device, root, chunk_rows = sys.argv[1:]
settings = ExecutorSettings(executor="ray", ray_address=address, actors=1)
ex = RayExtractor(settings, BackboneSpec(model, device, None))
shards.shard_nag(Storage(root), "tiny", ex.backbone(), NagSettings(chunk_rows=int(chunk_rows)),
                 None, ex)
print(round(time.perf_counter() - start, 3))
"""


def write_shards(root: Path, n: int, docs: int) -> list[str]:
    pool = load_wiki_leads(n * docs).select("id", "text")
    (root / "shards").mkdir(parents=True)
    keys = [f"s{i:03d}" for i in range(n)]
    for i, key in enumerate(keys):
        pq.write_table(pool.slice(i * docs, docs).to_arrow(), root / "shards" / f"{key}.parquet")
    pq.write_table(pool.head(1).to_arrow(), root / "shards" / "tiny.parquet")
    return keys


def qwen3_shaped(folder: Path) -> str:
    """A random model of Qwen3-1.7B's shape, saved in bf16 as a local model folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    from nag_assets.nag.backbone import embedded_folder

    tokenizer = AutoTokenizer.from_pretrained(embedded_folder())
    config = Qwen3Config(**{**_bench.QWEN3_1_7B, "vocab_size": len(tokenizer)})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _shard(store: Storage, key: str, backbone, settings: NagSettings, extractor=None) -> int:
    store.delete("assets/shard_nag", f"{key}.parquet")  # never a skip: always the work
    store.nags().delete("shard_nag")  # nor a copy from the NAG store
    step = steps.shard_nag(store, key, backbone, settings, None, extractor)
    return step.facts["nag_tokens"]


def start_local_cluster(gpu: bool):
    from nag_assets_tests.executors.cluster import auth_env, start_cluster

    env = auth_env()
    os.environ.update(env)
    cpus = os.cpu_count() or 1
    # Ray starts workers at nice 15; beside other load that starves the actors, not the
    # in-process run: the comparison is of where the work runs, so the actors get nice 0
    env = {**env, "PYTHONPATH": str(_bench.REPO), "RAY_worker_niceness": "0"}
    return start_cluster(cpus, env, gpus=None if gpu else 0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--docs", type=int, default=120)
    p.add_argument("--chunk-rows", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default="embedded")
    p.add_argument("--address", default=None)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--qwen3-shape", action="store_true")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.shards, a.docs, a.chunk_rows, a.rounds, a.model = 2, 12, 4, 1, _bench.tiny_model_dir()
    device = "auto" if a.gpu else "cpu"
    work = Path(tempfile.mkdtemp(prefix="nag-bench-ray-"))
    if a.qwen3_shape:
        a.model = qwen3_shaped(work / "qwen3-1.7b-shape")
    cluster = None if a.address else start_local_cluster(a.gpu)
    address = a.address or cluster.address
    try:
        return _bench.emit(_measure(a, device, address, work))
    finally:
        disconnect()
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def _measure(a, device: str, address: str, work: Path) -> dict:
    keys = write_shards(work, a.shards, a.docs)
    store = Storage(str(work))
    settings = NagSettings(chunk_rows=a.chunk_rows)
    spec = BackboneSpec(a.model, device, None)
    connect(address)
    stop_pool()  # count this run's loads from none
    start = time.perf_counter()
    local = load_backbone(a.model, device=device)
    startup = {"in_process": round(time.perf_counter() - start, 2)}
    pools = {"ray_1_actor": 1, "ray_2_actors": 2} if not a.gpu else {"ray_1_gpu_actor": 1}
    extractors, infos = {}, {}
    for name, n in pools.items():
        gpus = 1.0 if a.gpu else 0.0
        ex = RayExtractor(
            ExecutorSettings(
                executor="ray",
                ray_address=address,
                actors=n,
                gpus_per_actor=gpus,
                cpus_per_actor=1.0,
            ),
            spec,
        )
        start = time.perf_counter()
        infos[name] = ex.backbone()
        startup[name] = round(time.perf_counter() - start, 2)
        extractors[name] = ex
    cpu = {"in_process": 0.0, **dict.fromkeys(extractors, 0.0)}
    wall = dict.fromkeys(cpu, 0.0)
    methods = {"in_process": _timed(cpu, wall, "in_process", local, store, settings, None)}
    for name, ex in extractors.items():
        methods[name] = _timed(cpu, wall, name, infos[name], store, settings, ex)
    tokens = {k: _shard(store, k, local, settings) for k in keys}  # warm-up, token counts
    for name, ex in extractors.items():
        _shard(store, keys[0], infos[name], settings, ex)  # warm-up: first call on the pool
    before = {name: {w.pid for w in ex.workers()} for name, ex in extractors.items()}
    seconds = _bench.interleaved(methods, keys, a.rounds)
    overhead = _bench.interleaved(methods, ["tiny"], max(a.rounds, 2))
    total = sum(tokens.values())
    return {
        "benchmark": "ray_scaling",
        "machine": _bench.machine(),
        "model": a.model,
        "device": device,
        "shards": a.shards,
        "docs_per_shard": a.docs,
        "chunk_rows": a.chunk_rows,
        "nag_tokens": total,
        "tokens_per_s": {m: round(total / s, 1) for m, s in seconds.items()},
        "seconds": {m: round(s, 3) for m, s in seconds.items()},
        "overhead_per_shard_s": {m: round(s, 3) for m, s in overhead.items()},
        "startup_s": startup,
        "model_loads": _loads(before, extractors),
        "driver_process_s": _later_run(address, a.model, device, work, a.chunk_rows),
        "driver_cpu_share": {m: round(cpu[m] / wall[m], 3) for m in cpu},
        "torch_threads_in_process": torch.get_num_threads(),
    }


def _timed(cpu: dict, wall: dict, name: str, backbone, store, settings, extractor):
    """A method that also adds this process's CPU and wall seconds to `cpu` and `wall`."""

    def run(key: str) -> int:
        c, w = time.process_time(), time.perf_counter()
        try:
            return _shard(store, key, backbone, settings, extractor)
        finally:
            cpu[name] += time.process_time() - c
            wall[name] += time.perf_counter() - w

    return run


def _loads(before: dict, extractors: dict) -> dict:
    """Per pool: actors, model loads while timed (a new actor process is a new load)."""
    out = {}
    for name, ex in extractors.items():
        after = ex.workers()
        new = {w.pid for w in after} - before[name]
        out[name] = {"actors": len(after), "loads_while_timed": len(new)}
    return out


def _later_run(address: str, model: str, device: str, work: Path, chunk_rows: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(_bench.REPO)}
    cmd = [sys.executable, "-c", LATER_RUN, address, model, device, str(work), str(chunk_rows)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
