"""Triage backends on the labelled evaluation set: accuracy and speed.

    python -m benchmarks.triage_backends [--runtime onnx|torch] [--threads N] [--tune]

For the rules and the embedded backend: type accuracy and severity accuracy (severity from the pack
rules applied to the *predicted* type) over tests/eval/triage_eval.jsonl, and classifications per
second at batch 1 and batch 32, without and with the signature cache (warm: every signature seen).
Also the model's load time and resident memory. Writes benchmarks/results/triage_backends.json and
prints a markdown table.

`--tune` also reproduces how the embedded backend's ScoringWeights were chosen, on the pack examples
only (never the evaluation set): a leave-one-out grid over the score weights, then the confidence
calibration fitted on repeated 2-fold splits of the examples.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from pipeline.packs import DomainPack, PackRegistry, load_packs
from pipeline.triage import RulesBackend, TriageDecision, TriageInput, assess_severity
from pipeline.triage.embedded import EmbeddedBackend, ScoringWeights
from pipeline.triage.embedding import Embedder, OnnxMiniLmEmbedder, TorchMiniLmEmbedder

EVAL_SET = Path(__file__).resolve().parent.parent / "tests" / "eval" / "triage_eval.jsonl"
RESULTS = Path(__file__).resolve().parent / "results" / "triage_backends.json"


def load_eval(packs: PackRegistry) -> tuple[list[dict[str, Any]], list[TriageInput]]:
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [
        TriageInput(
            packs.view(row["tenant_id"]), f"EVAL-{i:04d}", None, row["description"], row["attributes"]
        )
        for i, row in enumerate(rows)
    ]
    return rows, items


def accuracy(
    rows: list[dict[str, Any]], items: list[TriageInput], decisions: list[TriageDecision]
) -> dict[str, Any]:
    type_ok = severity_ok = 0
    per_type: dict[str, list[int]] = {}
    confident = confident_ok = 0
    for row, item, decision in zip(rows, items, decisions, strict=True):
        right = decision.exception_type == row["expected_type"]
        type_ok += right
        per_type.setdefault(row["expected_type"], [0, 0])[0] += right
        per_type[row["expected_type"]][1] += 1
        severity, _ = assess_severity(
            item.tenant, decision.exception_type, row["attributes"], row["description"]
        )
        severity_ok += severity.value == row["expected_severity"]
        if decision.confidence >= item.tenant.min_confidence:
            confident += 1
            confident_ok += right
    n = len(rows)
    return {
        "type_accuracy": round(type_ok / n, 4),
        "severity_accuracy": round(severity_ok / n, 4),
        "mean_confidence": round(float(np.mean([d.confidence for d in decisions])), 4),
        # Decisions at or above the tenant's min_confidence go ahead without a human.
        "share_above_min_confidence": round(confident / n, 4),
        "accuracy_above_min_confidence": round(confident_ok / confident, 4) if confident else None,
        "per_type_accuracy": {t: round(ok / total, 3) for t, (ok, total) in sorted(per_type.items())},
        "confusions": Counter(
            f"{row['expected_type']} -> {d.exception_type}"
            for row, d in zip(rows, decisions, strict=True)
            if d.exception_type != row["expected_type"]
        ).most_common(10),
    }


def throughput(
    classify: Callable[[list[TriageInput]], list[TriageDecision]], items: list[TriageInput], batch: int
) -> dict[str, float]:
    """Classifications per second of wall-clock time, and per second of this process's CPU time
    (the figure to trust on a busy machine; with one model thread it is what an idle core gives)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(items), batch):
        classify(items[start : start + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": round(len(items) / wall, 1), "cpu": round(len(items) / max(cpu, 1e-9), 1)}


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def make_embedder(runtime: str, threads: int) -> Embedder:
    if runtime == "torch":
        return TorchMiniLmEmbedder(threads=threads)
    return OnnxMiniLmEmbedder(intra_op_threads=threads)


def run(runtime: str, threads: int) -> dict[str, Any]:
    packs = load_packs()
    rows, items = load_eval(packs)
    results: dict[str, Any] = {
        "eval_set": str(EVAL_SET.relative_to(EVAL_SET.parents[2])),
        "eval_size": len(rows),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "backends": {},
    }

    rules = RulesBackend()
    rules_speed = {f"batch_{b}": throughput(rules.classify, items, b) for b in (1, 32)}
    results["backends"]["rules"] = {
        "model": rules.model,
        **accuracy(rows, items, rules.classify(items)),
        "per_s": {"no_cache": rules_speed, "cache": None},
    }

    gc.collect()
    rss_before = rss_mb()
    started = time.perf_counter()
    embedder = make_embedder(runtime, threads)
    load_s = time.perf_counter() - started
    rss_model = rss_mb()
    started = time.perf_counter()
    cached = EmbeddedBackend(packs, embedder)
    build_s = time.perf_counter() - started
    uncached = EmbeddedBackend(packs, embedder, cache_size=0)
    decisions = uncached.classify(items)
    speed_no_cache = {f"batch_{b}": throughput(uncached.classify, items, b) for b in (1, 32)}
    cached.classify(items)  # warm every signature
    speed_cache = {f"batch_{b}": throughput(cached.classify, items, b) for b in (1, 32)}
    results["backends"]["embedded"] = {
        "model": embedder.model_name,
        "runtime": runtime,
        "threads": threads,
        **accuracy(rows, items, decisions),
        "per_s": {"no_cache": speed_no_cache, "cache": speed_cache},
        "model_load_s": round(load_s, 2),
        "prototype_build_s": round(build_s, 2),
        "rss_mb": {"before_model": rss_before, "after_model": rss_model, "after_classifying": rss_mb()},
        "cache": cached.cache_info(),
        "weights": asdict(ScoringWeights()),
    }
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "Classifications per second: wall clock (per CPU-second in brackets).",
        "",
        "| backend | model | type acc. | severity acc. | batch 1 | batch 32 | batch 1, cached | batch 32, cached |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def rate(speed: dict[str, float] | None) -> str:
        return f"{speed['wall']:,.0f} ({speed['cpu']:,.0f})" if speed else "n/a"

    for name, r in results["backends"].items():
        cache = r["per_s"]["cache"] or {}
        lines.append(
            f"| {name} | {r['model']} | {r['type_accuracy']:.1%} | {r['severity_accuracy']:.1%} "
            f"| {rate(r['per_s']['no_cache']['batch_1'])} | {rate(r['per_s']['no_cache']['batch_32'])} "
            f"| {rate(cache.get('batch_1'))} | {rate(cache.get('batch_32'))} |"
        )
    embedded = results["backends"]["embedded"]
    lines.append("")
    lines.append(
        f"Embedded: model load {embedded['model_load_s']} s, prototypes {embedded['prototype_build_s']} s, "
        f"RSS {embedded['rss_mb']['before_model']} -> {embedded['rss_mb']['after_model']} MB "
        f"({embedded['runtime']}, {embedded['threads']} thread(s)); "
        f"{embedded['share_above_min_confidence']:.0%} of decisions at or above the tenant's min_confidence, "
        f"{embedded['accuracy_above_min_confidence']:.1%} of those right. "
        f"{results['eval_size']} labelled exceptions, {results['machine']['cpus']} CPUs, load average "
        f"{results['machine']['load_average_1m_at_start']} -> {results['machine']['load_average_1m_at_end']}."
    )
    return "\n".join(lines)


# --- tuning on the pack examples (never on the evaluation set) ----------------------------------


class _CachingEmbedder:
    """Embeds each distinct text once: tuning rebuilds prototypes many times from the same texts."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._inner.embed(missing), strict=True))
        return np.array([self._vectors[t] for t in texts], dtype=np.float32).reshape(
            len(texts), self.dimension
        )


def _without_examples(domain: DomainPack, keep: dict[str, tuple[str, ...]]) -> DomainPack:
    types = {
        name: spec.model_copy(update={"examples": keep[name]})
        for name, spec in domain.exception_types.items()
    }
    return domain.model_copy(update={"exception_types": types})


def _held_out_scores(
    packs: PackRegistry,
    embedder: Embedder,
    splits: list[dict[str, dict[str, tuple[str, ...]]]],
    grid: list[ScoringWeights],
) -> list[list[tuple[str, dict[str, float]]]]:
    """For each weights in `grid`: (true type, type scores) of every held-out example of every split.
    A split maps domain -> type -> the examples kept as prototypes; the rest are queries."""
    out: list[list[tuple[str, dict[str, float]]]] = [[] for _ in grid]
    for split in splits:
        for domain_name, keep in split.items():
            domain = packs.domains[domain_name]
            reduced = _without_examples(domain, keep)
            backend = EmbeddedBackend(PackRegistry(domains={domain_name: reduced}), embedder, cache_size=0)
            tenant = next(t for t in packs.tenants.values() if t.domain == domain_name)
            view = replace(packs.view(tenant.tenant_id), domain=reduced)
            for type_name, spec in domain.exception_types.items():
                for text in spec.examples:
                    if text in keep[type_name]:
                        continue
                    item = TriageInput(view, "TUNE", None, text)
                    for index, weights in enumerate(grid):
                        out[index].append((type_name, backend.type_scores(item, weights)))
    return out


def tune(runtime: str, threads: int) -> dict[str, Any]:
    packs = load_packs()
    embedder = _CachingEmbedder(make_embedder(runtime, threads))
    grid = [
        ScoringWeights(centroid=c, description=d, phrase=p, keyword_hit=k)
        for c, d, p, k in itertools.product(
            (0.5, 0.75, 1.0), (0.2, 0.4), (0.2, 0.35, 0.5), (0, 0.05, 0.1, 0.15, 0.2, 0.3)
        )
    ]
    loo_splits = []
    for domain_name, domain in packs.domains.items():
        for type_name, spec in domain.exception_types.items():
            for text in spec.examples:
                keep = {n: s.examples for n, s in domain.exception_types.items()}
                keep[type_name] = tuple(e for e in spec.examples if e != text)
                loo_splits.append({domain_name: keep})
    loo = _held_out_scores(packs, embedder, loo_splits, grid)
    ranked = sorted(
        ((sum(t == next(iter(s)) for t, s in scores) / len(scores), i) for i, scores in enumerate(loo)),
        key=lambda pair: (-pair[0], pair[1]),  # ties: the first in grid order
    )
    best_acc, best_index = ranked[0]
    best = grid[best_index]

    # Confidence: logistic fit of "top type is right" on (margin, best score) over held-out halves.
    rng = random.Random(7)
    halves = []
    for _ in range(5):
        for domain_name, domain in packs.domains.items():
            keep = {}
            for type_name, spec in domain.exception_types.items():
                shuffled = list(spec.examples)
                rng.shuffle(shuffled)
                keep[type_name] = tuple(shuffled[: max(3, len(shuffled) // 2)])
            halves.append({domain_name: keep})
    (held_out,) = _held_out_scores(packs, embedder, halves, [best])
    features, labels = [], []
    for true_type, scores in held_out:
        ranked_scores = list(scores.items())
        features.append([ranked_scores[0][1] - ranked_scores[1][1], ranked_scores[0][1]])
        labels.append(float(ranked_scores[0][0] == true_type))
    slope_margin, slope_score, bias = _fit_logistic(np.array(features), np.array(labels))
    return {
        "leave_one_out": {
            "examples": len(loo[0]),
            "best": asdict(best),
            "best_accuracy": round(best_acc, 4),
            "top5": [(round(acc, 4), asdict(grid[i])) for acc, i in ranked[:5]],
            "note": "keywords were written from the examples, so leave-one-out favours keyword weight",
        },
        "confidence_fit": {
            "queries": len(labels),
            "held_out_accuracy": round(float(np.mean(labels)), 4),
            "margin_slope": round(slope_margin, 2),
            "score_slope": round(slope_score, 2),
            "bias": round(bias, 2),
        },
    }


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50
) -> tuple[float, float, float]:
    """Newton's method for a small L2-regularised logistic regression; returns (w1, w2, bias)."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = np.diag([l2, l2, 0.0])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + penalty @ w
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    return float(w[0]), float(w[1]), float(w[2])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the model runtime")
    parser.add_argument(
        "--tune", action="store_true", help="also re-derive the scoring weights on the pack examples"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = run(args.runtime, args.threads)
    if args.tune:
        results["tuning"] = tune(args.runtime, args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    if args.tune:
        print("\nTuning (pack examples only):", json.dumps(results["tuning"], indent=2))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
