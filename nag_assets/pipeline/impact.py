"""The impact baseline of baseline-normalized NAGs (beyond the paper): each neuron's mean
impact over a fixed sample of documents, computed once per (backbone, max_tokens, sample)
and kept in the NAG store (`<nag_store>/impact_baseline/`), so every selection that shares
the store shares it; computed once on a machine however many runs ask at once (a lock).

The sample is fixed, not the live pool, so a new shard never changes the NAGs of the others:
incremental runs stay incremental. Point `impact_sample` at a file of your own pool (e.g.
`shards/<one shard>.parquet`) to normalize against your data rather than Wikipedia.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import fsspec
import numpy as np

from nag_assets.nag import BackboneFacts, loaded, neuron_baseline
from nag_assets.pipeline import slots
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.layout import IMPACT_BASELINE
from nag_assets.sources.files import InputError, read_documents
from nag_assets.sources.wiki import load_wiki_leads, spread
from nag_assets.storage import Storage, digest

FOLDER = "impact_baseline"  # in the NAG store
LEGACY_FOLDER = IMPACT_BASELINE  # where roots made before the store kept it
EMBEDDED = "embedded"
EMBEDDED_DOCS = 256


def sample_texts(storage: Storage, sample: str) -> tuple[list[str], str]:
    """(texts, version) of the impact sample: 256 Wikipedia leads spread over the alphabet,
    or the documents of a parquet/JSONL file (relative to the root, or a URL)."""
    version, texts = _sample(storage, sample)
    return texts(), version


def _sample(storage: Storage, sample: str) -> tuple[str, Callable[[], list[str]]]:
    """(version, texts loader): every step needs the version for its fingerprint, only the
    one that computes the baseline needs the texts parsed."""
    if sample == EMBEDDED:
        return digest(EMBEDDED, EMBEDDED_DOCS), lambda: spread(load_wiki_leads(), EMBEDDED_DOCS)[
            "text"
        ].to_list()
    try:
        if "://" in sample or sample.startswith("/"):
            with fsspec.open(sample, "rb") as f:
                data = f.read()
        else:
            data = storage.read_bytes(sample)
    except (OSError, ValueError) as e:
        raise InputError(f"impact_sample {sample!r}: cannot read it ({e})") from e
    if not data:
        raise InputError(f"impact_sample {sample!r}: no such file, or it is empty")

    def texts() -> list[str]:
        docs = read_documents(data, sample.rsplit("/", 1)[-1], "impact_sample")
        if docs.height == 0:
            raise InputError(f"impact_sample {sample!r}: the file holds no documents")
        return docs["text"].to_list()

    return hashlib.sha256(data).hexdigest()[:32], texts


def impact_baseline(
    storage: Storage, backbone: BackboneFacts, settings: NagSettings, progress=None
) -> tuple[np.ndarray | None, str]:
    """(baseline or None for raw impact, the NAG fingerprint these settings give)."""
    if settings.impact == "raw":
        return None, settings.fingerprint(backbone)
    sample_version, texts = _sample(storage, settings.impact_sample)
    fp = settings.fingerprint(backbone, sample_version)
    name = f"{digest(backbone.fingerprint, settings.max_tokens, sample_version)}.npy"
    store = storage.nags()
    with slots.once(f"impact-baseline-{name}"):
        # the store's, else one a root made before the store kept (moved into the store)
        for where, folder in ((store, FOLDER), (storage, LEGACY_FOLDER)):
            try:
                baseline = where.read_npy(folder, name)
            except FileNotFoundError:
                continue
            if where is storage:
                store.write_npy(baseline, FOLDER, name)
            return baseline, fp
        model = loaded(backbone, "the impact baseline")  # an executor prepares it beforehand
        baseline = neuron_baseline(
            model, texts(), settings.max_tokens, settings.batch_size, progress or False
        )
        store.write_npy(baseline, FOLDER, name)
    return baseline, fp
