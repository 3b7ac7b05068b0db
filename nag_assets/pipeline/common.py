"""What the steps share: NAG settings, step results, NAG tables, locating input files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import polars as pl

from nag_assets.nag import Backbone, BackboneFacts, extract_nags
from nag_assets.nag.adapters import UP
from nag_assets.nag.extract import BATCH_SIZE, MAX_TOKENS, TOP_K
from nag_assets.nag.layers import ALL as ALL_LAYERS
from nag_assets.nag.layers import LayerSpecError, parse_layers
from nag_assets.pipeline.layout import NagFooter
from nag_assets.sources.chunks import CHUNK_ROWS
from nag_assets.sources.files import InputError, is_input_file
from nag_assets.storage import ChangedWhileReading, Storage, check_key, digest, partition_key

STEP_CODE_VERSION = "1"  # bump when a step's output changes for the same inputs


IMPACTS = ("raw", "normalized")

# Named settings (`NAG_PRESET` / `BackboneResource.preset`): `paper` is the paper's exact
# method; `tuned` (the graph's default) is the best measured by benchmarks/quality.py on
# SmolLM2-135M: baseline-normalized impact, scored on the last third of the layers.
PRESETS: dict[str, dict] = {
    "paper": {"top_k": TOP_K, "impact": "raw", "layers": ALL_LAYERS, "neurons": UP},
    "tuned": {"top_k": TOP_K, "impact": "normalized", "layers": "from:0.67", "neurons": UP},
}
DEFAULT_PRESET = "tuned"


@dataclass(frozen=True)
class NagSettings:
    """Settings that change a NAG (top_k, max_tokens, impact, impact_sample), the profile
    that scores it (layers), or only its speed and memory (batch_size; chunk_rows, the
    documents read and extracted at a time); the field defaults are the paper's method
    (`PRESETS`). `impact="normalized"` (beyond the paper) divides each neuron's impact by its
    mean over `impact_sample` ("embedded": Wikipedia leads; else a documents file, relative to
    the storage root or a URL) before the top-K. `layers` (`nag.layers` spec: all, last,
    last:N, from:F, 20-29) scores only those layers; the NAGs stay whole, so changing it
    rescores but re-extracts only the targets' few examples."""

    top_k: int = TOP_K
    max_tokens: int = MAX_TOKENS
    batch_size: int = BATCH_SIZE
    impact: str = "raw"
    impact_sample: str = "embedded"
    chunk_rows: int = CHUNK_ROWS
    layers: str = ALL_LAYERS

    def __post_init__(self) -> None:
        if self.impact not in IMPACTS:
            raise InputError(f"impact {self.impact!r} must be one of {list(IMPACTS)}")
        try:
            parse_layers(self.layers, 1 << 16)  # the spec's syntax; the range once loaded
        except LayerSpecError as e:
            raise InputError(str(e).replace(" outside the backbone's 0-65535", "")) from e

    @classmethod
    def preset(cls, name: str, **overrides) -> NagSettings:
        """A named preset's settings (neurons, a backbone setting, left out), with overrides."""
        if name not in PRESETS:
            raise InputError(f"preset {name!r} must be one of {sorted(PRESETS)}")
        chosen = {k: v for k, v in PRESETS[name].items() if k != "neurons"}
        return cls(**(chosen | {k: v for k, v in overrides.items() if v is not None}))

    def layer_subset(self, backbone: BackboneFacts) -> list[int] | None:
        """The layers scored, or None for all of them (the paper)."""
        try:
            layers = parse_layers(self.layers, backbone.num_layers)
        except LayerSpecError as e:
            raise InputError(str(e)) from e
        return None if len(layers) == backbone.num_layers else list(layers)

    def fingerprint(self, backbone: BackboneFacts, sample_version: str | None = None) -> str:
        """Raw impact: (backbone, top_k, max_tokens). Normalized adds the sample's version."""
        if self.impact == "raw":
            return digest(backbone.fingerprint, self.top_k, self.max_tokens)
        if sample_version is None:
            raise ValueError("normalized impact needs the impact sample's version")
        return digest(
            backbone.fingerprint, self.top_k, self.max_tokens, "normalized", sample_version
        )


@dataclass
class StepResult:
    """What a step did: its output's version, whether it skipped, facts for the UI."""

    version: str
    skipped: bool
    facts: dict = field(default_factory=dict)


Progress = Callable[[int, int, int], None]


INPUT_INDEX = "assets/_inputs"  # <folder>/<key>.json: the file a partition key names


def record_input(storage: Storage, folder: str, key: str, name: str) -> None:
    """Remember which file (its path under the input folder) partition `key` names, so a step
    finds it without listing the pool (the pool sensor records each key it adds)."""
    storage.write_bytes(json.dumps({"name": name}).encode(), INPUT_INDEX, folder, f"{key}.json")


def find_input(storage: Storage, folder: str, key: str) -> tuple[Storage, str, str] | None:
    """(the folder's storage, full path, path under the folder) of the input file whose
    partition key is `key`: from the index the sensor keeps (O(1)), else by listing."""
    source = storage.inputs(folder)
    try:
        name = json.loads(storage.read_bytes(INPUT_INDEX, folder, f"{key}.json"))["name"]
    except FileNotFoundError:
        name = None
    if name is not None and key_or_none(name) == key and source.exists(name):
        return source, source.path(name), name
    for f in source.list_inputs():
        if is_input_file(f.name) and key_or_none(f.name) == key:
            return source, f.path, f.name
    return None


def read_input(storage: Storage, folder: str, key: str) -> tuple[str, bytes, str] | None:
    """(file name, bytes, sha256) of the input file of partition `key`, or None if there is
    none. The bytes are one whole version of the file (a file that changes while it is read
    is read again); the hash is of exactly these bytes."""
    check_key(key)
    found = find_input(storage, folder, key)
    if found is None:
        return None
    source, path, name = found
    try:
        data = source.read_whole(path)
    except FileNotFoundError as e:
        raise InputError(f"{name}: removed while being read; nothing to do until it is back") from e
    except ChangedWhileReading as e:
        raise InputError(
            f"{name}: changed while being read, again and again; it is read afresh once the "
            "writer is done (the pool sensor sees the new version)"
        ) from e
    return name, data, hashlib.sha256(data).hexdigest()[:32]


def key_or_none(name: str) -> str | None:
    try:
        return partition_key(name)
    except ValueError:
        return None


def nag_table(
    backbone: Backbone,
    ids: pl.Series,
    texts: list[str],
    s: NagSettings,
    progress=None,
    baseline: np.ndarray | None = None,
) -> pl.DataFrame:
    """id, tokens (full length, what budgets count), nag_tokens, nag (flattened L*K int16)."""
    full = backbone.tokenize(texts)  # once: the budget counts all, the NAG reads max_tokens
    nags, used = extract_nags(
        backbone, texts, s.top_k, s.max_tokens, s.batch_size, progress, baseline, full
    )
    flat = nags.reshape(len(texts), -1)
    return pl.DataFrame(
        {
            "id": ids,
            "tokens": np.array([len(x) for x in full], dtype=np.int64),
            "nag_tokens": used,
            "nag": pl.Series(flat, dtype=pl.Array(pl.Int16, flat.shape[1])),
        }
    )


def nag_footer(
    version: str, backbone: BackboneFacts, settings: NagSettings, fp: str, **extra
) -> NagFooter:
    """The footer of a NAG table: its version, what `nags_of` needs to unflatten it, and the
    settings that made it."""
    return NagFooter(
        version=version,
        layers=backbone.num_layers,
        top_k=settings.top_k,
        d_ff=backbone.d_ff,
        max_tokens=settings.max_tokens,
        impact=settings.impact,
        nag_fingerprint=fp,
        neurons=None if backbone.neuron_type == UP else backbone.neuron_type,
        **extra,
    )


def nags_of(df: pl.DataFrame, footer: NagFooter | dict) -> np.ndarray:
    """(n, L, K) int16 NAGs back from a table written by `nag_table`."""
    if isinstance(footer, dict):
        footer = NagFooter.from_meta(footer)
    flat = df["nag"].to_numpy()
    return flat.reshape(df.height, footer.layers, footer.top_k).astype(np.int16)


T = TypeVar("T")


def require(meta: T | None, what: str) -> T:
    if meta is None:
        raise InputError(f"{what} has not been materialized yet")
    return meta
