"""Bad inputs beyond test_steps.py: each is a clear InputError naming the file and the spot,
or (long documents, control characters, ids shared by shards) a documented rule, reported."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import huggingface_hub
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nag_assets.nag import Backbone, load_backbone
from nag_assets.nag.backbone import BackboneError
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, UnsafeKeyError, partition_key
from nag_assets_tests.tiny import save_tiny, tiny_tokenizer

SETTINGS = NagSettings(top_k=4, max_tokens=16)


def _texts(n: int, word: str = "rain") -> list[str]:
    return [f"Document {i}: the {word} fell {i} times near town {i % 3}." for i in range(n)]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _parquet(table: pl.DataFrame | pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table.to_arrow() if isinstance(table, pl.DataFrame) else table, buf)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    (tmp_path / "targets").mkdir()
    (tmp_path / "shards").mkdir()
    return Storage(str(tmp_path))


def _put(store: Storage, folder: str, name: str, data: bytes) -> None:
    Path(store.path(folder, name)).write_bytes(data)


def _fails(store: Storage, backbone: Backbone, name: str, data: bytes) -> str:
    """Put `name` under shards/, run shard_nag on it; the error message (nothing written)."""
    _put(store, "shards", name, data)
    key = partition_key(name)
    with pytest.raises(InputError) as err:
        shards.shard_nag(store, key, backbone, SETTINGS)
    assert not store.exists(f"assets/shard_nag/{key}.parquet")
    return str(err.value)


# ---- text and id: present, strings, valid Unicode -----------------------------------------


def test_jsonl_rows_without_a_string_text(store: Storage, backbone: Backbone) -> None:
    good = [{"text": t} for t in _texts(2)]
    cases = {
        "nokey.jsonl": ({"body": "x"}, "line 4 has no `text` field (fields: ['body'])"),
        "null.jsonl": ({"text": None}, "line 4, field `text` is null"),
        "num.jsonl": ({"text": 42}, "line 4, field `text` is a number, not a string"),
        "obj.jsonl": ({"text": {"a": 1}}, "line 4, field `text` is an object, not a string"),
    }
    for name, (row, message) in cases.items():
        # a blank line first: line numbers count it, as an editor does
        assert _fails(store, backbone, name, b"\n" + _jsonl([*good, row])) == f"{name}: {message}"


def test_parquet_text_null_or_not_string(store: Storage, backbone: Backbone) -> None:
    nulls = pl.DataFrame({"text": ["a b c", "d e", None, None]})
    assert _fails(store, backbone, "nulls.parquet", _parquet(nulls)) == (
        "nulls.parquet: row 2, column `text` is null (2 such)"
    )
    ints = pl.DataFrame({"text": [1, 2]})
    assert _fails(store, backbone, "ints.parquet", _parquet(ints)) == (
        "ints.parquet: column `text` has type Int64, not string"
    )


def test_invalid_utf8_names_line_or_row_and_column(store: Storage, backbone: Backbone) -> None:
    data = _jsonl([{"text": "fine"}]) + b'{"text": "caf\xe9 au lait"}\n'
    assert _fails(store, backbone, "latin1.jsonl", data) == (
        "latin1.jsonl: line 2 is not valid UTF-8 (byte 0xe9 at byte 14)"
    )
    surrogate = b'{"text": "ok"}\n{"id": "x", "text": "half \\ud800 pair"}\n'
    assert _fails(store, backbone, "surrogate.jsonl", surrogate).startswith(
        "surrogate.jsonl: line 2, field `text` is not valid Unicode (lone surrogate '\\ud800'"
    )
    # parquet whose string column holds bytes that are not UTF-8
    raw = pa.array([b"ok", b"bad \xff here"], type=pa.binary()).view(pa.string())
    table = pa.table({"id": ["a", "b"], "text": raw})
    assert _fails(store, backbone, "bytes.parquet", _parquet(table)) == (
        "bytes.parquet: row 1, column `text` is not valid UTF-8 (byte 0xff at byte 5)"
    )


def test_control_characters_become_spaces_and_are_counted(
    store: Storage, backbone: Backbone
) -> None:
    texts = ["plain text", "bell\x07 and nul\x00 inside", "form\x0cfeed", "tab\tand\nnewline"]
    _put(store, "shards", "ctl.jsonl", _jsonl([{"text": t} for t in texts]))
    step = shards.shard_nag(store, "ctl", backbone, SETTINGS)
    assert step.facts["control_character_rows"] == 2  # tab and newline are fine
    # what is scored and what the mixture carries: the text with spaces for the controls
    docs = read_documents(store.read_bytes("shards", "ctl.jsonl"), "ctl.jsonl", "ctl")
    assert docs["text"].to_list() == [
        "plain text",
        "bell  and nul  inside",
        "form feed",
        "tab\tand\nnewline",
    ]
    # in an id, a control character is an error (ids are keys, not prose)
    bad_id = _jsonl([{"id": "a", "text": "x"}, {"id": "b\x00", "text": "y"}])
    assert _fails(store, backbone, "badid.jsonl", bad_id) == (
        "badid.jsonl: line 2, `id` 'b\\x00' is empty or holds a control character"
    )


def test_a_byte_order_mark_is_not_an_error(store: Storage, backbone: Backbone) -> None:
    _put(store, "shards", "bom.jsonl", b"\xef\xbb\xbf" + _jsonl([{"text": t} for t in _texts(3)]))
    assert shards.shard_nag(store, "bom", backbone, SETTINGS).facts["documents_extracted"] == 3


# ---- duplicate ids ---------------------------------------------------------------------------


def test_duplicate_ids_inside_a_shard(store: Storage, backbone: Backbone) -> None:
    rows = [{"id": i, "text": t} for i, t in zip(["a", "b", "a", "c", "b"], _texts(5))]
    assert _fails(store, backbone, "dups.jsonl", b"\n" + _jsonl(rows)) == (
        "dups.jsonl: id 'a' appears more than once (line 2, line 4); ids must be unique within "
        "a file (2 ids repeated)"
    )
    df = pl.DataFrame({"id": [7, 8, 7], "text": _texts(3)})
    assert _fails(store, backbone, "dupnums.parquet", _parquet(df)).startswith(
        "dupnums.parquet: id '7' appears more than once (row 0, row 2)"
    )


def _scored_pool(store: Storage, backbone: Backbone, pool: dict[str, list[dict]]) -> list[str]:
    _put(store, "targets", "snow.jsonl", _jsonl([{"text": t} for t in _texts(6, "snow")]))
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, SETTINGS)
    for name, rows in pool.items():
        _put(store, "shards", f"{name}.jsonl", _jsonl(rows))
        shards.shard_nag(store, name, backbone, SETTINGS)
        shards.shard_scores(store, name, ["snow"])
    return sorted(pool)


def test_same_id_in_two_shards_is_two_documents(store: Storage, backbone: Backbone) -> None:
    """The rule: a document is (shard, id). Identical documents in two shards are both in the
    pool, tie in score, and rank by (id, shard); the facts count the shared ids."""
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(_texts(10))]
    keys = _scored_pool(store, backbone, {"left": rows, "right": rows, "other": rows[:3]})
    step = mixture.selected_mixture(store, keys, ["snow"], mixture.MixtureSettings(fraction=0.5))
    mix = mixture.read_mixture(store)
    assert step.facts["ids_in_several_shards"]["count"] == 10
    sample = step.facts["ids_in_several_shards"]["sample"]
    assert sample["doc-0"] == ["left", "other", "right"] and sample["doc-9"] == ["left", "right"]
    # the selection is the prefix of the pool ranked by (score desc, id, shard) within budget
    pool = pl.concat(
        [
            store.read_parquet("assets/shard_scores", f"{k}.parquet").with_columns(shard=pl.lit(k))
            for k in keys
        ]
    ).sort(["snow", "id", "shard"], descending=[True, False, False])
    budget = step.facts["targets"]["snow"]["budget"]
    assert budget == step.facts["pool_tokens"] // 2
    used, expected = 0, []
    for doc_id, shard, tokens in pool.select("id", "shard", "tokens").rows():
        if used + tokens > budget:
            break
        used += tokens
        expected.append((doc_id, shard))
    assert sorted(mix.select("id", "shard").rows()) == sorted(expected)
    assert int(mix["tokens"].sum()) == used <= budget
    # a tie that straddles the cut-off: the same document in both shards, only the first
    # shard's copy fits (this pool's budget lands between the two copies of one document)
    shards_of = {}
    for doc_id, shard in expected:
        shards_of.setdefault(doc_id, []).append(shard)
    assert all(v == sorted(v) for v in shards_of.values())
    # and the same pool gives the same bytes again
    first = mixture.mixture_digest(store)
    store.delete("selected_mixture")
    mixture.selected_mixture(store, keys, ["snow"], mixture.MixtureSettings(fraction=0.5))
    assert mixture.mixture_digest(store) == first


# ---- long documents: truncated for the NAG, counted in full for the budget -------------------


def test_document_far_longer_than_max_tokens(store: Storage, backbone: Backbone) -> None:
    long_text = " ".join(f"word{i}" for i in range(5000))  # ~30k characters, tokens
    rows = [{"text": "short one"}, {"text": long_text}, {"text": ""}]
    _put(store, "shards", "long.jsonl", _jsonl(rows))
    step = shards.shard_nag(store, "long", backbone, SETTINGS)
    table = store.read_parquet("assets/shard_nag", "long.parquet")
    full = backbone.count_tokens([r["text"] for r in rows]).tolist()
    assert table["tokens"].to_list() == full and full[1] > 100 * SETTINGS.max_tokens
    assert table["nag_tokens"].to_list() == [full[0], SETTINGS.max_tokens, 0]
    assert step.facts["truncated_documents"] == 1 and step.facts["empty_documents"] == 1
    assert step.facts["tokens"] == sum(full)


# ---- settings and missing inputs ------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, math.nan, math.inf])
def test_budget_fraction_outside_zero_one(fraction: float) -> None:
    with pytest.raises(InputError, match=r"budget fraction .* must be in \(0, 1\]"):
        mixture.MixtureSettings(fraction=fraction)
    assert mixture.MixtureSettings(fraction=1.0).fraction == 1.0


def test_bad_weights(store: Storage) -> None:
    with pytest.raises(
        InputError,
        match=r"mixture.weights: target weights \{'a': -1(\.0)?\} must be finite numbers",
    ):
        mixture.MixtureSettings(weights={"a": -1})
    with pytest.raises(InputError, match=r"weights name unknown targets \['nope'\]"):
        mixture.selected_mixture(
            store, ["s"], ["snow"], mixture.MixtureSettings(weights={"nope": 1})
        )


def test_no_targets_or_no_shards_say_so(store: Storage, backbone: Backbone) -> None:
    with pytest.raises(InputError, match=r"^no targets: add a target file under .*/targets/"):
        mixture.selected_mixture(store, ["a"], [], mixture.MixtureSettings())
    with pytest.raises(
        InputError, match=r"^no shards: add parquet or JSONL files under .*/shards/"
    ):
        mixture.selected_mixture(store, [], ["snow"], mixture.MixtureSettings())
    with pytest.raises(InputError, match=r"^no targets: add a target file under targets/ first"):
        shards.shard_scores(store, "a", [])
    # targets and shards are named, but none is ready: each one's reason is given
    with pytest.raises(
        InputError, match=r"^no target is ready to select for: \{'snow': 'no target_nag yet"
    ):
        mixture.selected_mixture(store, ["a"], ["snow"], mixture.MixtureSettings())
    _put(store, "targets", "snow.jsonl", _jsonl([{"text": t} for t in _texts(6, "snow")]))
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, SETTINGS)
    with pytest.raises(
        InputError, match=r"^none of the shards is scored yet.*'a': 'no shard_nag yet: not extr"
    ):
        mixture.selected_mixture(store, ["a"], ["snow"], mixture.MixtureSettings())


# ---- partition keys never become paths outside the root --------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../escape.parquet", "/abs.parquet", "a//b.parquet", "./x.jsonl", ".parquet", "d/.jsonl"],
)
def test_unsafe_file_names_are_not_partition_keys(name: str) -> None:
    """Names that would leave the folder, or have no name, never become keys. (Upper case,
    spaces and sub-folders do: nag_assets_tests/pipeline/test_keys.py.)"""
    with pytest.raises(UnsafeKeyError, match=f"file {re.escape(repr(name))}"):
        partition_key(name)


def test_unsafe_keys_never_reach_a_path(store: Storage, backbone: Backbone) -> None:
    for key in ["../outside", "a/b", "x" * 101, "bench__../../etc", ""]:
        with pytest.raises(UnsafeKeyError, match="is not safe as a file name"):
            shards.shard_nag(store, key, backbone, SETTINGS)
        with pytest.raises(UnsafeKeyError):
            shards.shard_scores(store, key, ["snow"])
        with pytest.raises(UnsafeKeyError):
            targets.target_dataset(store, key, backbone.count_tokens)
        with pytest.raises(UnsafeKeyError):
            targets.target_nag(store, key, backbone, SETTINGS)
    # the mixture leaves an unsafe shard key out, with the reason
    usable, left_out, _ = mixture.scored_shards(store, ["../up"], [])
    assert not usable and "is not safe as a file name" in left_out["../up"]
    # and the storage layer itself refuses to build such a path
    for parts in [("..", "x"), ("assets/../../x",), ("/etc/passwd",), ("a//b",)]:
        with pytest.raises(UnsafeKeyError, match="would leave the storage root"):
            store.path(*parts)
    assert store.path("assets/shard_nag", "a.parquet").endswith("/assets/shard_nag/a.parquet")


# ---- backbones that cannot serve ----------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.usefixtures("offline")
def test_backbone_that_cannot_be_loaded(tmp_path: Path) -> None:
    with pytest.raises(
        BackboneError, match=r"cannot load backbone '/no/such/model': no such folder"
    ):
        load_backbone("/no/such/model", device="cpu")
    folder = save_tiny(tmp_path / "broken")
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a download cut short
    with pytest.raises(BackboneError, match=r"cannot load backbone '.*broken': SafetensorError"):
        load_backbone(str(folder), device="cpu")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BackboneError, match=r"config\.json' is not a valid JSON file"):
        load_backbone(str(folder), device="cpu")


@pytest.mark.usefixtures("offline")
def test_backbone_without_an_mlp_up_projection(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, OPTConfig

    config = OPTConfig(
        vocab_size=300,
        hidden_size=16,
        ffn_dim=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        word_embed_proj_dim=16,
        max_position_embeddings=64,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "opt")
    tiny_tokenizer().save_pretrained(tmp_path / "opt")
    with pytest.raises(
        BackboneError, match=r"OPTForCausalLM has no MLP up-projection this tool knows"
    ):
        load_backbone(str(tmp_path / "opt"), device="cpu")
