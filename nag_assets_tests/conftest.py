"""Fixtures for the whole suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import nag_assets
import nag_assets.nag.extract as extract
from nag_assets_tests.executors.cluster import LocalCluster, auth_env, start_cluster
from nag_assets_tests.s3.conftest import AWS_ENV

RAY_CLUSTER_CPUS = 2


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny test models gain nothing from threads; on a busy machine they cost 40x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def extraction_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every backbone pass the package makes while the test runs: extract_nags,
    extract_impacts and neuron_baseline all run the backbone through `extract._Run` (a test's
    own calls, to compute expectations, are not counted)."""
    calls: list[list[str]] = []
    real = extract._Run.__init__

    def counting(self, backbone, texts, *args, **kwargs):
        if _called_by_the_package():
            calls.append(list(texts))
        real(self, backbone, texts, *args, **kwargs)

    monkeypatch.setattr(extract._Run, "__init__", counting)
    return calls


def _called_by_the_package() -> bool:
    """Whether the first caller outside `nag.extract` is package code, not a test."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") == extract.__name__:
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame else ""
    return name.startswith("nag_assets.")


@pytest.fixture(scope="session")
def ray_env() -> Iterator[dict[str, str]]:
    """The auth token in this process's environment too (the driver needs it to connect)."""
    env = auth_env()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


@pytest.fixture(scope="session")
def ray_cluster(ray_env: dict[str, str]) -> Iterator[LocalCluster]:
    """One real Ray cluster for the session (`ray start --head` on 127.0.0.1, 2 CPUs), started
    once (a start costs seconds). Its workers get the test credentials of the S3 server
    (workers read storage with their own environment, as on a real cluster) and this checkout
    on their path; the driver (this process) connects with the session's auth token."""
    from nag_assets.executors.ray import disconnect

    checkout = str(Path(nag_assets.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    env = {**ray_env, **AWS_ENV, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cluster = start_cluster(RAY_CLUSTER_CPUS, env)
    try:
        yield cluster
    finally:
        disconnect()
        cluster.stop()
