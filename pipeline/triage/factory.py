"""Build the configured triage backend with its fallback chain: openai -> embedded -> rules,
embedded -> rules, rules. Model libraries are imported only for the backends in the chain."""

from __future__ import annotations

from pipeline.packs import PackRegistry
from pipeline.settings import TriageSettings
from pipeline.triage.backend import TriageBackend
from pipeline.triage.rules import RulesBackend


def build_backend(settings: TriageSettings, packs: PackRegistry) -> TriageBackend:
    """The backend the triage model replicas serve. Raises ConfigurationError when a model file is
    missing or fails its checksum."""
    if settings.backend == "rules":
        return RulesBackend()
    from pipeline.triage.fallback import FallbackBackend

    chain: list[TriageBackend] = []
    if settings.backend == "openai":
        chain.append(_openai(settings))
    chain += [_embedded(settings, packs), RulesBackend()]
    return FallbackBackend(chain)


def _embedded(settings: TriageSettings, packs: PackRegistry) -> TriageBackend:
    from pipeline.triage.embedded import EmbeddedBackend
    from pipeline.triage.embedding import OnnxMiniLmEmbedder, TorchMiniLmEmbedder

    if settings.runtime == "torch":
        embedder = TorchMiniLmEmbedder()
    else:
        embedder = OnnxMiniLmEmbedder(intra_op_threads=settings.model_threads)
    return EmbeddedBackend(packs, embedder, cache_size=settings.cache_size,
                           rules_shortcut_confidence=settings.rules_shortcut_confidence)


def _openai(settings: TriageSettings) -> TriageBackend:
    from pipeline.triage.circuit_breaker import CircuitBreaker
    from pipeline.triage.openai_backend import OpenAIBackend

    config = settings.openai
    assert config.base_url is not None  # checked by TriageSettings
    return OpenAIBackend(
        base_url=config.base_url,
        model=config.model,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
        response_format=config.response_format,
        timeout_s=config.timeout_s,
        max_concurrency=config.max_concurrency,
        breaker=CircuitBreaker(config.breaker_failure_threshold, config.breaker_reset_after_s),
    )
