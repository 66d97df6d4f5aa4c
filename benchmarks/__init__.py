"""Benchmarks of the SentinAI platform. Each one is a module run with `python -m benchmarks.<name>`;
results go to `benchmarks/results/`, the write-up to `docs/benchmarks.md`."""

__all__: list[str] = []
