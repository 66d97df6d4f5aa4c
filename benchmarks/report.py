"""Turn what a run measured into its result (a JSON-ready dict) and markdown tables.

`python -m benchmarks.report benchmarks/results/*.json` prints the summary table of several runs.

Throughput figures, all over the publishing window [t0, t0 + duration]:
- `steady_per_s`: exceptions whose final time falls in [t0 + warm-up, t0 + duration], per second
  (the first seconds are left out: the pipeline is still filling);
- `window_per_s`: exceptions final within the window, per second (the tail still in flight at the
  end is not counted, so this is lower than the offered rate by about one latency);
- `overall_per_s`: all measured exceptions divided by the time from t0 to the last final state.
The run *keeps up* when nothing is lost, `steady_per_s` is at least 97 % of the offered rate, and the
last exception is final within 5 s after the last one was published.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from benchmarks.measure import FEEDBACK_STATUSES, FINAL_STATUSES, distribution_ms
from benchmarks.publisher import PreparedEvent, PublishOutcome

KEEP_UP_RATIO = 0.97
KEEP_UP_DRAIN_S = 5.0


def analyse(
    *, events: list[PreparedEvent], outcome: PublishOutcome, collected: dict[str, Any], rate_per_s: float,
    duration_s: float,
) -> dict[str, Any]:
    t0, t_end = outcome.started_at, outcome.started_at + duration_s
    warm_s = min(10.0, duration_s / 6)
    finals = {(row["tenant_id"], row["exception_id"]): row for row in collected["finals"]}
    e2e, e2e_commit, final_times, by_status, statuses = [], [], [], {}, {}
    intake_hops = []
    lost_examples = []
    for index, event in enumerate(events):
        key = (event.tenant_id, event.exception_id)
        sent = outcome.sent_at[index]
        row = finals.get(key)
        intake_at = collected["intake"].get(key)
        if intake_at is not None:
            intake_hops.append(intake_at - sent)
        done = (
            row is not None and row["final_at"] is not None and row["status"] in FINAL_STATUSES
            and (row["status"] not in FEEDBACK_STATUSES or row["has_feedback"])
        )
        if not done:
            if len(lost_examples) < 5:
                lost_examples.append({"exception_id": key[1], "status": row["status"] if row else None})
            continue
        latency = row["final_at"] - sent
        e2e.append(latency)
        final_times.append(row["final_at"])
        by_status.setdefault(row["status"], []).append(latency)
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        if row.get("commit_at") is not None:
            e2e_commit.append(row["commit_at"] - sent)
    count, done_count = len(events), len(final_times)
    last_final = max(final_times) if final_times else None
    steady = sum(1 for at in final_times if t0 + warm_s <= at <= t_end) / (duration_s - warm_s)
    in_window = sum(1 for at in final_times if at <= t_end)
    drain_after_publish_s = (last_final - outcome.finished_at) if last_final else None
    lost = count - done_count
    dlq_total = sum(entry["count"] for entry in collected["dlq"])
    publish_span = max(1e-9, outcome.finished_at - t0)
    throughput = {
        "offered_per_s": rate_per_s,
        "published_per_s": round(count / max(publish_span, duration_s - 0.1), 1),
        "steady_per_s": round(steady, 1),
        "window_per_s": round(in_window / duration_s, 1),
        "overall_per_s": round(done_count / (last_final - t0), 1) if last_final else 0.0,
        "events_window_per_s": round(collected["events_in_window"] / duration_s, 1),
        "events_overall_per_s": round(collected["events_since_start"] / (collected["events_last_at"] - t0), 1)
        if collected["events_last_at"] else 0.0,
        "events_per_exception": round(collected["events_since_start"] / max(1, done_count), 2),
        "backlog_at_window_end": count - in_window,
        "drain_after_publish_s": round(drain_after_publish_s, 2) if drain_after_publish_s is not None else None,
    }
    keeps_up = (
        lost == 0 and steady >= KEEP_UP_RATIO * rate_per_s
        and drain_after_publish_s is not None and drain_after_publish_s <= KEEP_UP_DRAIN_S
    )
    acks = [acked - sent for sent, acked in zip(outcome.sent_at, outcome.acked_at, strict=True) if acked]
    return {
        "exceptions": count,
        "done": done_count,
        "lost": lost,
        "lost_examples": lost_examples,
        "dlq": dlq_total,
        "dlq_detail": collected["dlq"],
        "rate_limited": collected.get("rate_limited", {}),
        "keeps_up": keeps_up,
        "final_statuses": statuses,
        "processing_statuses": collected["processing_statuses"],
        "throughput": throughput,
        "publish": {
            "failed": outcome.failed,
            "errors": outcome.errors,
            "max_tick_lateness_ms": round(outcome.max_tick_lateness_s * 1000, 1),
            "ack_latency_ms": distribution_ms(acks),
        },
        "latency_ms": {
            "end_to_end": distribution_ms(e2e),
            "end_to_end_commit": distribution_ms(e2e_commit) if e2e_commit else None,
            "by_final_status": {status: distribution_ms(values) for status, values in sorted(by_status.items())},
            "intake_hop_from_publish": distribution_ms(intake_hops),
            "first_10s": distribution_ms([lat for lat, at in zip(e2e, final_times, strict=True) if at - lat < t0 + 10]),
            "last_10s": distribution_ms([lat for lat, at in zip(e2e, final_times, strict=True) if at - lat >= t_end - 10]),
        },
        "stages": {"hops": collected["hops"], "durations": collected["durations"]},
        "timeline_per_s": _timeline(outcome, final_times, t0),
    }


def _timeline(outcome: PublishOutcome, final_times: list[float], t0: float) -> dict[str, list[int]]:
    """Exceptions published and reaching their final state in each second after t0."""
    end = max([*final_times, outcome.finished_at, t0])
    seconds = int(math.floor(end - t0)) + 1
    published, completed = [0] * seconds, [0] * seconds
    for sent in outcome.sent_at:
        if sent:
            published[min(seconds - 1, max(0, int(sent - t0)))] += 1
    for at in final_times:
        completed[min(seconds - 1, max(0, int(at - t0)))] += 1
    return {"published": published, "completed": completed}


# --- markdown ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def summary_row(result: dict[str, Any]) -> str:
    t, lat = result["throughput"], result["latency_ms"]["end_to_end"]
    commit = result["latency_ms"].get("end_to_end_commit") or {}
    p99_commit = f" ({_fmt(commit.get('p99'))})" if commit else ""
    return (
        f"| {result['name']} | {_fmt(t['offered_per_s'])} | {_fmt(t['steady_per_s'])} | {_fmt(t['window_per_s'])} "
        f"| {_fmt(t['events_window_per_s'])} | {_fmt(result['lost'])} | {_fmt(result['dlq'])} | {_fmt(lat['p50'])} | {_fmt(lat['p95'])} "
        f"| {_fmt(lat['p99'])}{p99_commit} | {_fmt(t['drain_after_publish_s'], 1)} | {'yes' if result['keeps_up'] else 'no'} |"
    )


SUMMARY_HEADER = (
    "| run | offered/s | sustained exc/s | exc/s in window | events/s | lost | DLQ | e2e p50 ms | e2e p95 ms "
    "| e2e p99 ms | drain s | keeps up |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"### {result['name']}", "", f"config: `{result['config_summary']}`", "", SUMMARY_HEADER, summary_row(result), ""]
    if result.get("rate_limited"):
        lines += [f"**Tenants held back by their rate limits** (events): {result['rate_limited']}: the figures measure "
                  "the limits, not the pipeline.", ""]
    lines += ["| stage | input | events | hop p50 ms | hop p95 ms | hop p99 ms |", "|---|---|---|---|---|---|"]
    intake = result["latency_ms"]["intake_hop_from_publish"]
    lines.append(f"| intake | publish | {_fmt(intake['count'])} | {_fmt(intake['p50'])} | {_fmt(intake['p95'])} | {_fmt(intake['p99'])} |")
    for hop in result["stages"]["hops"]:
        h = hop["hop_ms"]
        lines.append(f"| {hop['stage']} | {hop['input']} | {_fmt(hop['events'])} | {_fmt(h['p50'])} | {_fmt(h['p95'])} | {_fmt(h['p99'])} |")
    lines += ["", "| stage | handle() p50/p99 ms | batch start→commit p50/p99 ms | batches | avg batch | pauses |", "|---|---|---|---|---|---|"]
    consumers = result.get("consumers", {})
    for stage, entry in sorted(result["stages"]["durations"].items()):
        d = entry["duration_ms"]
        c = entry.get("batch_start_to_commit_ms") or {}
        s = consumers.get(stage, {})
        lines.append(
            f"| {stage} | {_fmt(d['p50'], 2)} / {_fmt(d['p99'], 2)} | {_fmt(c.get('p50'))} / {_fmt(c.get('p99'))} "
            f"| {_fmt(s.get('batches'))} | {_fmt(s.get('avg_batch'), 1)} | {_fmt(s.get('pauses'))} |"
        )
    res = result["resources"]["publishing"]
    lines += ["", f"CPU in % of one core ({res.get('cores')} cores); machine busy avg {_fmt(res.get('machine_busy_avg_pct'))} %, "
              f"iowait avg {_fmt(res.get('iowait_avg_pct'))} %, not accounted to any group {_fmt(res.get('unaccounted_avg_pct'))} %", "",
              "| component | CPU avg % | CPU max % | RSS max MB |", "|---|---|---|---|"]
    for name, g in sorted(res.get("groups", {}).items(), key=lambda item: -item[1]["cpu_avg_pct"]):
        lines.append(f"| {name} | {_fmt(g['cpu_avg_pct'])} | {_fmt(g['cpu_max_pct'])} | {_fmt(g['rss_max_mb'])} |")
    loop_ms = result.get("machine", {}).get("python_loop_ms")
    if loop_ms:
        lines += ["", f"Host speed: the Python loop of `resources.python_loop_ms` took {_fmt(loop_ms['before'], 1)} ms before "
                  f"the run and {_fmt(loop_ms['after'], 1)} ms after (lower is faster)."]
    statements = result.get("postgres_statements") or []
    if statements:
        lines += ["", "| PostgreSQL statement | calls | rows | exec ms | plan ms |", "|---|---|---|---|---|"]
        for entry in statements[:10]:
            query = entry["query"].replace("|", "\\|")
            lines.append(f"| `{query}` | {_fmt(entry['calls'])} | {_fmt(entry['rows'])} | {_fmt(entry['exec_ms'])} | {_fmt(entry['plan_ms'])} |")
    for name, profile in result.get("profiles", {}).items():
        lines += ["", f"py-spy `{name}` ({profile.get('samples', 0)} samples), top self: "
                  + "; ".join(f"{frame} {pct}%" for frame, pct in profile.get("self_pct", [])[:6])]
    return "\n".join(lines)


def print_and_save(label: str, columns: dict[str, str], results: dict[str, dict[str, Any]], config: dict[str, Any],
                   path: str) -> None:
    """For the small comparison benchmarks: print `results` (one row per way measured, `columns`
    mapping a figure's key to its header) as a markdown table, and save them with `config` as JSON."""
    print(f"| {label} | " + " | ".join(columns.values()) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, figures in results.items():
        print(f"| {name} | " + " | ".join(str(figures[key]) for key in columns) + " |")
    save_results(path, config, results)


def save_results(path: str, config: dict[str, Any], results: dict[Any, Any]) -> None:
    """A small benchmark's results, with the arguments it ran with, as JSON."""
    Path(path).write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")


def main(paths: list[str]) -> int:
    print(SUMMARY_HEADER)
    for path in paths:
        print(summary_row(json.loads(Path(path).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
