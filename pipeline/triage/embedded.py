"""The embedded triage backend: nearest-prototype classification over sentence embeddings.

Each domain pack's exception types become prototypes, embedded once at construction:
- the type's `examples` (per-type centroid and the most similar single example, blended),
- its `description`,
- short phrases: its `keywords` and its `aliases` ("STL_FAIL" -> "stl fail"),
plus a small bonus for each pack keyword found verbatim in the text (the rules backend's evidence).

The type score is

    s = (1 - KW) * [(1 - DW) * (W * cos(centroid) + (1 - W) * max cos(example)) + DW * cos(description)]
        + KW * max cos(phrase) + BETA * min(keyword hits, 3)

with W, DW, KW, BETA chosen by leave-one-out over the pack examples (never on the evaluation set;
see benchmarks/triage_backends.py). Confidence is a logistic function of the margin between the two
best scores and of the best score, fitted on held-out halves of the pack examples.

Rules decisions at or above `rules_shortcut_confidence` skip the model (0.95: a type hint that names
a known type); recently seen signatures are answered from an LRU cache; `add_examples` extends a
domain's prototypes at run time (tenant examples, feedback).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from pipeline.packs import DomainPack, PackRegistry
from pipeline.triage.backend import TriageDecision, TriageInput
from pipeline.triage.embedding import Embedder
from pipeline.triage.rules import RulesBackend


@dataclass(frozen=True)
class ScoringWeights:
    """How prototype similarities combine into a type score, and the score margin into confidence.

    The defaults were chosen by leave-one-out over the bundled pack examples and the confidence
    constants fitted on repeated 2-fold splits of them (`python -m benchmarks.triage_backends --tune`
    reproduces both); never on the evaluation set."""

    centroid: float = 0.5  # W: centroid vs most similar example
    description: float = 0.2  # DW
    phrase: float = 0.2  # KW: keywords and aliases as short prototypes
    keyword_hit: float = 0.2  # BETA: per pack keyword found verbatim
    max_keyword_hits: int = 3
    # confidence = sigmoid(margin_slope * (best - runner-up) + score_slope * best + bias)
    margin_slope: float = 15.13
    score_slope: float = 14.28
    bias: float = -6.83


_WORD = re.compile(r"[a-z0-9]+")
_RATIONALE_EXAMPLE_CHARS = 90


@dataclass(frozen=True)
class _Prototypes:
    """One domain's prototype vectors. Immutable: `add_examples` builds a new one."""

    types: tuple[str, ...]
    fallback_type: str
    examples: tuple[tuple[str, ...], ...]  # per type
    example_vectors: NDArray[np.float32]  # (m, d), grouped by type in `types` order
    example_offsets: NDArray[np.intp]  # start row of each type's examples
    centroids: NDArray[np.float32]  # (k, d)
    descriptions: NDArray[np.float32]  # (k, d)
    phrase_vectors: NDArray[np.float32]  # (p, d), grouped by type
    phrase_offsets: NDArray[np.intp]
    phrase_types: NDArray[np.intp]  # which types have phrases, in order
    keywords: tuple[tuple[str, ...], ...]  # normalised pack keywords per type
    generation: int


class EmbeddedBackend:
    """Nearest-prototype triage over `embedder`'s vectors. Thread-safe; `classify` embeds all
    uncached texts of a batch in one call.

    - `cache_size`: signatures (domain, normalised description, hint) kept in the LRU; 0 disables it.
    - `rules_shortcut_confidence`: rules decisions at or above it are returned without the model.
      0.95 (the default) lets only a type hint that names a known type skip the model; 0.85 also
      lets strong keyword matches skip it; None sends everything to the model.
    - `weights`: the scoring constants (tests and tuning).

    Raises whatever the embedder raises (ConfigurationError at construction when the model files
    are missing or altered)."""

    name = "embedded"

    def __init__(
        self,
        packs: PackRegistry,
        embedder: Embedder,
        *,
        cache_size: int = 10_000,
        rules_shortcut_confidence: float | None = 0.95,
        weights: ScoringWeights | None = None,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._embedder = embedder
        self.model = embedder.model_name
        self._rules = RulesBackend()
        self._shortcut = rules_shortcut_confidence
        self._weights = weights or ScoringWeights()
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, str, str], TriageDecision] = OrderedDict()
        self._lock = threading.Lock()  # the cache and its counters
        self._update_lock = threading.Lock()  # add_examples
        self._hits = 0
        self._misses = 0
        self._domains: dict[str, DomainPack] = dict(packs.domains)
        self._added: dict[str, dict[str, tuple[str, ...]]] = {}
        self._prototypes: dict[str, _Prototypes] = {
            name: self._build(domain) for name, domain in self._domains.items()
        }

    # --- public -------------------------------------------------------------------------------

    def classify(self, batch: list[TriageInput]) -> list[TriageDecision]:
        decisions: list[TriageDecision | None] = [None] * len(batch)
        pending: dict[tuple[str, int, str, str], list[int]] = {}
        for index, item in enumerate(batch):
            if self._shortcut is not None:
                ruled = self._rules.classify_one(item)
                if ruled.confidence >= self._shortcut:
                    decisions[index] = ruled
                    continue
            key = self._key(item)
            cached = self._cache_get(key)
            if cached is not None:
                decisions[index] = cached
            else:
                pending.setdefault(key, []).append(index)
        if pending:
            keys = list(pending)
            items = [batch[pending[key][0]] for key in keys]
            for key, decision in zip(keys, self._classify_uncached(items), strict=True):
                self._cache_put(key, decision)
                for index in pending[key]:
                    decisions[index] = decision
        return [decision for decision in decisions if decision is not None]

    def add_examples(self, domain: str, exception_type: str, texts: Sequence[str]) -> int:
        """Add labelled example texts to a domain's prototypes (tenant examples, analyst feedback).
        Returns how many were new. Decisions cached before the change are no longer served.
        Raises ValueError for an unknown domain or type."""
        pack = self._domains.get(domain)
        if pack is None:
            raise ValueError(f"unknown domain {domain!r} (have {sorted(self._domains)})")
        if exception_type not in pack.exception_types:
            raise ValueError(f"{exception_type!r} is not a {domain} exception type")
        # Updates are serialised (embedding happens under this lock); classification goes on with
        # the old prototypes until the new ones replace them in one assignment.
        with self._update_lock:
            added = dict(self._added.get(domain, {}))
            known = {*pack.exception_types[exception_type].examples, *added.get(exception_type, ())}
            new = tuple(dict.fromkeys(t.strip() for t in texts if t.strip() and t.strip() not in known))
            if not new:
                return 0
            added[exception_type] = added.get(exception_type, ()) + new
            vectors = self._embedder.embed(list(new))
            self._prototypes[domain] = _with_examples(self._prototypes[domain], exception_type, new, vectors)
            self._added[domain] = added
        return len(new)

    def examples(self, domain: str) -> dict[str, tuple[str, ...]]:
        """The example texts the domain's prototypes hold now, per type (pack plus added)."""
        prototypes = self._prototypes[domain]
        return dict(zip(prototypes.types, prototypes.examples, strict=True))

    def type_scores(self, item: TriageInput, weights: ScoringWeights | None = None) -> dict[str, float]:
        """Every type's score for one input, best first, with these weights (default: the
        backend's); no cache, no rules shortcut. For explanations and for tuning the weights."""
        prototypes = self._prototypes_for(item.tenant.domain)
        text = _model_text(item)
        scores, _, _ = _score(prototypes, self._embedder.embed([text])[0], text, weights or self._weights)
        return dict(sorted(zip(prototypes.types, scores.tolist(), strict=True), key=lambda kv: -kv[1]))

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "size": len(self._cache),
                "max_size": self._cache_size,
            }

    # --- classification -----------------------------------------------------------------------

    def _classify_uncached(self, items: list[TriageInput]) -> list[TriageDecision]:
        texts = [_model_text(item) for item in items]
        to_embed = [i for i, text in enumerate(texts) if text]
        vectors = self._embedder.embed([texts[i] for i in to_embed]) if to_embed else None
        results: list[TriageDecision] = []
        row = 0
        for item, text in zip(items, texts, strict=True):
            prototypes = self._prototypes_for(item.tenant.domain)
            if not text:
                results.append(
                    TriageDecision(
                        prototypes.fallback_type,
                        0.0,
                        "empty description: fallback type",
                        self.name,
                        self.model,
                    )
                )
                continue
            assert vectors is not None
            results.append(self._decide(prototypes, vectors[row], text))
            row += 1
        return results

    def _decide(self, prototypes: _Prototypes, vector: NDArray[np.float32], text: str) -> TriageDecision:
        weights = self._weights
        scores, example_sims, hits = _score(prototypes, vector, text, weights)
        order = np.argsort(-scores)
        best, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
        margin = float(scores[best] - scores[second])
        confidence = _sigmoid(
            weights.margin_slope * margin + weights.score_slope * float(scores[best]) + weights.bias
        )
        start = int(prototypes.example_offsets[best])
        nearest = start + int(np.argmax(example_sims[start : start + len(prototypes.examples[best])]))
        example = prototypes.examples[best][nearest - start]
        if len(example) > _RATIONALE_EXAMPLE_CHARS:
            example = example[: _RATIONALE_EXAMPLE_CHARS - 1] + "…"
        rationale = (
            f"nearest example of {prototypes.types[best]} (cosine {example_sims[nearest]:.2f}): {example!r}; "
            f"score {scores[best]:.3f}, runner-up {prototypes.types[second]} {scores[second]:.3f}"
        )
        if hits[best]:
            rationale += f"; {int(hits[best])} pack keyword(s) of {prototypes.types[best]} in the text"
        return TriageDecision(prototypes.types[best], round(confidence, 3), rationale, self.name, self.model)

    def _prototypes_for(self, domain: DomainPack) -> _Prototypes:
        prototypes = self._prototypes.get(domain.pack)
        if prototypes is None:  # a domain pack registered after construction
            built = self._build(domain)
            with self._update_lock:
                self._domains.setdefault(domain.pack, domain)
                prototypes = self._prototypes.setdefault(domain.pack, built)
        return prototypes

    def _build(self, domain: DomainPack) -> _Prototypes:
        types = tuple(domain.exception_types)
        examples = tuple(tuple(dict.fromkeys(domain.exception_types[name].examples)) for name in types)
        phrases = tuple(_phrases(domain, name) for name in types)
        flat_examples = [text for group in examples for text in group]
        flat_phrases = [text for group in phrases for text in group]
        descriptions = [domain.exception_types[name].description for name in types]
        vectors = self._embedder.embed(flat_examples + descriptions + flat_phrases)
        example_vectors = vectors[: len(flat_examples)]
        description_vectors = vectors[len(flat_examples) : len(flat_examples) + len(types)]
        phrase_vectors = vectors[len(flat_examples) + len(types) :]
        example_offsets = _offsets([len(group) for group in examples])
        with_phrases = [i for i, group in enumerate(phrases) if group]
        return _Prototypes(
            types=types,
            fallback_type=domain.fallback_type,
            examples=examples,
            example_vectors=example_vectors,
            example_offsets=example_offsets,
            centroids=_centroids(example_vectors, example_offsets),
            descriptions=description_vectors,
            phrase_vectors=phrase_vectors,
            phrase_offsets=_offsets([len(phrases[i]) for i in with_phrases]),
            phrase_types=np.array(with_phrases, dtype=np.intp),
            keywords=tuple(
                tuple(w for w in map(_words, domain.exception_types[name].keywords) if w) for name in types
            ),
            generation=0,
        )

    # --- cache --------------------------------------------------------------------------------

    def _key(self, item: TriageInput) -> tuple[str, int, str, str]:
        domain = item.tenant.domain.pack
        prototypes = self._prototypes.get(domain)
        generation = prototypes.generation if prototypes is not None else 0
        # The model is uncased and whitespace-insensitive, so this normalisation never merges two
        # texts the model would tell apart.
        return (
            domain,
            generation,
            " ".join(item.description.lower().split()),
            _words(item.type_hint or ""),
        )

    def _cache_get(self, key: tuple[str, int, str, str]) -> TriageDecision | None:
        with self._lock:
            decision = self._cache.get(key)
            if decision is None:
                self._misses += 1
                return None
            self._cache.move_to_end(key)
            self._hits += 1
            return decision

    def _cache_put(self, key: tuple[str, int, str, str], decision: TriageDecision) -> None:
        if self._cache_size == 0:
            return
        with self._lock:
            self._cache[key] = decision
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _with_examples(
    prototypes: _Prototypes, type_name: str, texts: tuple[str, ...], vectors: NDArray[np.float32]
) -> _Prototypes:
    """A copy with `texts` (embedded as `vectors`) added to one type's examples."""
    index = prototypes.types.index(type_name)
    groups = np.split(prototypes.example_vectors, prototypes.example_offsets[1:])
    groups[index] = np.concatenate([groups[index], vectors])
    examples = list(prototypes.examples)
    examples[index] = examples[index] + texts
    example_offsets = _offsets([len(group) for group in groups])
    example_vectors = np.concatenate(groups)
    return replace(
        prototypes,
        examples=tuple(examples),
        example_vectors=example_vectors,
        example_offsets=example_offsets,
        centroids=_centroids(example_vectors, example_offsets),
        generation=prototypes.generation + 1,
    )


def _centroids(vectors: NDArray[np.float32], offsets: NDArray[np.intp]) -> NDArray[np.float32]:
    centroids = np.add.reduceat(vectors, offsets, axis=0)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids.astype(np.float32)


def _score(
    prototypes: _Prototypes, vector: NDArray[np.float32], text: str, weights: ScoringWeights
) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.float64]]:
    """Type scores (k,), the cosine to every example (m,), and keyword hits per type (k,)."""
    example_sims = prototypes.example_vectors @ vector
    best_example = np.maximum.reduceat(example_sims, prototypes.example_offsets)
    examples = weights.centroid * (prototypes.centroids @ vector) + (1 - weights.centroid) * best_example
    score = (1 - weights.description) * examples + weights.description * (prototypes.descriptions @ vector)
    phrase = score.copy()  # a type without phrases is not penalised for it
    if len(prototypes.phrase_types):
        phrase[prototypes.phrase_types] = np.maximum.reduceat(
            prototypes.phrase_vectors @ vector, prototypes.phrase_offsets
        )
    words = f" {_words(text)} "
    hits = np.array(
        [
            min(weights.max_keyword_hits, sum(1 for k in keywords if f" {k} " in words))
            for keywords in prototypes.keywords
        ],
        dtype=np.float64,
    )
    total = (1 - weights.phrase) * score + weights.phrase * phrase + weights.keyword_hit * hits
    return total.astype(np.float64), example_sims, hits


def _phrases(domain: DomainPack, type_name: str) -> tuple[str, ...]:
    spec = domain.exception_types[type_name]
    # The fallback type's aliases (OTHER, UNKNOWN, MISC) say nothing about the text.
    aliases = () if type_name == domain.fallback_type else tuple(_words(alias) for alias in spec.aliases)
    return tuple(dict.fromkeys(p for p in (*spec.keywords, *aliases) if p))


def _model_text(item: TriageInput) -> str:
    """What the model reads: the description, after the source system's hint when there is one."""
    description = " ".join(item.description.split())
    hint = _words(item.type_hint or "")
    return f"{hint}: {description}" if hint and description else description or hint


def _words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _offsets(sizes: list[int]) -> NDArray[np.intp]:
    return (
        np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp) if sizes else np.zeros(0, dtype=np.intp)
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
