"""progress_logger: what a backbone step logs to its run while extracting."""

from __future__ import annotations

import pytest

import nag_assets.defs.common as common

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)


class _Context:
    def __init__(self) -> None:
        self.log = _Log()


def test_logs_first_batch_then_every_interval_then_total(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    context = _Context()
    report = common.progress_logger(context, "shard_nag[s]", every_s=10)
    for done, t in [(32, 2.0), (64, 5.0), (96, 12.5), (128, 14.0), (160, 20.0)]:
        now[0] = 100.0 + t
        report(done, 160, done * 100)
    assert context.log.lines == [
        "shard_nag[s]: 32/160 texts (20%), 1600 tokens/s, ~8s left",
        "shard_nag[s]: 96/160 texts (60%), 768 tokens/s, ~8s left",
        "shard_nag[s]: done, 160 texts, 16000 tokens in 20.0s (800 tokens/s)",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (89, "89s"), (600, "10 min"), (7200, "2.0 h")]
)
def test_time_left_reads_naturally(seconds: float, text: str) -> None:
    assert common._duration(seconds) == text
