"""The figures of a run as one JSON object and as a table for people (pure).

The JSON object (``--json``) is an interface: scripts such as tests/perf read
it. Top level: ``mode``, ``params`` (every option), ``ok`` (no error and every
check passed), ``errors`` (the run broke: no connection, server closed or
stalled), ``failures`` (wrong answers), ``checks`` (all phases together:
expected/delivered, losses, duplicates, reorders, malformed, foreign: lines of
earlier runs, such as a history replay, ignored),
``generator`` (CPU per worker, ``saturated_workers``) and ``results``, whose
keys depend on the mode (see _stream, _fanout, _capacity; slow has
``baseline``, ``with_slow_client``, ``p99_ratio``, ``slow_client_dropped``).
Times are in ms unless a key says otherwise. ``params.ports`` and
``params.pids`` are lists: a cluster is several nodes (and a Redis), and
``server_cpu`` and ``server_rss_kb`` are sums over ``pids``.
"""

import json
from dataclasses import asdict
from typing import Any, Optional

from gchat.bench.options import Options
from gchat.bench.results import CapacityResult, Checks, Cpu, FanoutResult, PhaseResult, StreamResult
from gchat.bench.stats import Histogram, percentile

# Above this share of a core, a worker process was probably the bottleneck.
SATURATED = 0.9
QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))

Json = dict[str, Any]


def _ms(histogram: Histogram) -> Json:
    if not histogram.count or histogram.max is None:
        return {"samples": 0}
    figures: Json = {"samples": histogram.count}
    for name, q in QUANTILES:
        figures[name] = round(histogram.percentile(q) / 1e6, 4)
    figures["max"] = round(histogram.max / 1e6, 4)
    return figures


def _per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _checks(checks: Checks) -> Json:
    figures = asdict(checks)
    figures["malformed_total"] = sum(checks.malformed.values())
    figures["failures"] = checks.failures()
    figures["passed"] = not figures["failures"]
    return figures


def _cpu(cpus: list[Cpu]) -> list[Json]:
    return [
        {"worker": cpu.worker, "cpu": round(cpu.fraction, 3), "wall_s": round(cpu.wall_s, 3)} for cpu in cpus
    ]


def _stream(result: StreamResult) -> Json:
    seconds = result.interval_s
    return {
        "interval_s": round(seconds, 3),
        "lines_sent": result.lines_sent,
        "lines_sent_measured": result.lines_sent_measured,
        "lines_sent_per_s": _per_s(result.lines_sent_measured, seconds),
        "lines_accepted": result.lines_accepted,
        "lines_accepted_per_s": _per_s(result.lines_accepted, seconds),
        "deliveries_measured": result.deliveries_measured,
        "deliveries_per_s": _per_s(result.deliveries_measured, seconds),
        "latency_ms": _ms(result.latency),
        "schedule_lag_ms": _ms(result.lag),
        "drain_s": round(result.drain_s, 3),
        "checks": _checks(result.checks),
        "cpu": _cpu(result.cpu),
        "slow_client_dropped": result.slow_dropped,
        "server_cpu": round(result.server_cpu, 3) if result.server_cpu is not None else None,
    }


def _fanout(result: FanoutResult, options: Options) -> Json:
    reach = sorted(result.reach_ms)
    figures: Json = {
        "clients": result.clients,
        "connect_s": round(result.connect_s, 3),
        "messages": len(reach),
        "reach_all_ms": {
            "median": round(percentile(reach, 50), 3) if reach else None,
            "max": round(reach[-1], 3) if reach else None,
            "samples": [round(value, 3) for value in result.reach_ms],
        },
        "server_rss_kb": None,
        "server_cpu": round(result.server_cpu, 3) if result.server_cpu is not None else None,
        "checks": _checks(result.checks),
        "cpu": _cpu(result.cpu),
    }
    if result.rss_before_kb is not None and result.rss_after_kb is not None:
        growth = result.rss_after_kb - result.rss_before_kb
        figures["server_rss_kb"] = {
            "pids": list(options.pids),
            "before": result.rss_before_kb,
            "after": result.rss_after_kb,
            "per_connection": round(growth / result.clients, 2) if result.clients else None,
        }
    return figures


def _capacity(result: CapacityResult) -> Json:
    steps = []
    best: Optional[int] = None
    for step in result.steps:
        reach = sorted(step.reach_ms)
        p95 = percentile(reach, 95) if reach else None
        under = p95 is not None and p95 <= result.limit_ms and step.error is None
        if under:
            best = step.clients
        steps.append(
            {
                "clients": step.clients,
                "lines": len(reach),
                "p95_ms": round(p95, 3) if p95 is not None else None,
                "median_ms": round(percentile(reach, 50), 3) if reach else None,
                "max_ms": round(reach[-1], 3) if reach else None,
                "under_limit": under,
                "error": step.error,
                "generator_cpu": round(step.cpu.fraction, 3) if step.cpu is not None else None,
                "server_cpu": round(step.server_cpu, 3) if step.server_cpu is not None else None,
                "round_s": round(step.cpu.wall_s, 3) if step.cpu is not None else None,
                # Every line of the round counted, the untimed ones too: unlike a reach time, hardly
                # changed by other processes taking turns on the server's core.
                "server_us_per_delivery": round(
                    step.server_cpu * step.cpu.wall_s * 1e6 / (step.clients * step.lines_sent), 3
                )
                if step.server_cpu is not None and step.cpu is not None and step.lines_sent
                else None,
            }
        )
    return {
        "limit_ms": result.limit_ms,
        "steps": steps,
        "max_clients_under_limit": best,
        "limit_reached": any(not step["under_limit"] for step in steps),
        "checks": _checks(result.checks),
        "cpu": _cpu(result.cpu),
    }


def build(options: Options, phases: list[PhaseResult], errors: list[str]) -> Json:
    """Everything a run found, with its parameters; ``ok`` only if no error and every check passed."""
    errors = list(errors)
    checks = Checks()
    cpus: list[Cpu] = []
    for phase in phases:
        errors += phase.errors
        checks.merge(phase.checks)
        cpus += phase.cpu
    errors = list(dict.fromkeys(errors))
    results: Json = {}
    first = phases[0] if phases else None
    if isinstance(first, StreamResult):
        if options.mode == "slow" and len(phases) == 2 and isinstance(phases[1], StreamResult):
            baseline, slowed = _stream(first), _stream(phases[1])
            before = baseline["latency_ms"].get("p99")
            after = slowed["latency_ms"].get("p99")
            results = {
                "baseline": baseline,
                "with_slow_client": slowed,
                "p99_ratio": round(after / before, 3) if before and after else None,
                "slow_client_dropped": phases[1].slow_dropped,
            }
        else:
            results = _stream(first)
    elif isinstance(first, FanoutResult):
        results = _fanout(first, options)
    elif isinstance(first, CapacityResult):
        results = _capacity(first)
    failures = checks.failures() if phases else []
    saturated = [cpu.worker for cpu in cpus if cpu.fraction > SATURATED]
    return {
        "tool": "gchat.bench",
        "mode": options.mode,
        "params": asdict(options),
        "ok": not errors and not failures,
        "errors": errors,
        "failures": failures,
        "checks": _checks(checks),
        "generator": {"cpu": _cpu(cpus), "saturated_workers": sorted(set(saturated))},
        "results": results,
    }


def to_json(report: Json) -> str:
    return json.dumps(report, sort_keys=False)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _latency_row(figures: Json) -> str:
    if not figures.get("samples"):
        return "no samples"
    parts = [f"{name} {figures[name]:.3f}" for name, _ in QUANTILES] + [f"max {figures['max']:.3f}"]
    return "  ".join(parts) + f"   ({_n(figures['samples'])} lines)"


def _stream_rows(figures: Json, mode: str) -> list[tuple[str, str]]:
    rows = [
        ("measured", f"{figures['interval_s']:.2f} s"),
        (
            "lines sent",
            f"{_n(figures['lines_sent_per_s'])}/s   ({_n(figures['lines_sent_measured'])} measured)",
        ),
    ]
    if mode == "throughput":
        rows.append(
            ("lines accepted", f"{_n(figures['lines_accepted_per_s'])}/s   (seen by the probe in time)")
        )
        rows.append(("deliveries", f"{_n(figures['deliveries_per_s'])}/s   (all receivers)"))
    else:
        lag = figures["schedule_lag_ms"]
        if lag.get("samples"):
            rows.append(("schedule lag ms", f"p99 {lag['p99']:.3f}  max {lag['max']:.3f}"))
    rows.append(("latency ms", _latency_row(figures["latency_ms"])))
    if figures["server_cpu"] is not None:
        rows.append(("server cpu", f"{figures['server_cpu'] * 100:.0f}% of a core"))
    checks = figures["checks"]
    rows.append(
        (
            "deliveries counted",
            f"{_n(checks['delivered'])} of {_n(checks['expected'])} expected"
            + _drain_note(checks, figures["drain_s"]),
        )
    )
    rows.append(_check_row(checks))
    rows += _cpu_rows(figures["cpu"])
    return rows


def _drain_note(checks: Json, seconds: float) -> str:
    if checks["delivered"] > checks["expected"]:
        return "   (MORE THAN EXPECTED)"
    if not checks["drained"]:
        return f"   (NOT DRAINED after {seconds:.2f} s)"
    return f"   (drained in {seconds:.2f} s)"


def _cpu_rows(cpus: list[Json]) -> list[tuple[str, str]]:
    return [(f"generator cpu w{cpu['worker']}", f"{cpu['cpu'] * 100:.0f}% of a core") for cpu in cpus]


def _measured(mode: str, results: Json) -> bool:
    """Whether the run got far enough to have figures worth a table."""
    if not results:
        return False
    if mode == "slow":
        return bool(results["baseline"]["lines_sent"])
    if mode in ("throughput", "latency"):
        return bool(results["lines_sent"])
    if mode == "fanout":
        return bool(results["messages"])
    return bool(results["steps"])


def _check_row(checks: Json) -> tuple[str, str]:
    # Lines with another run's token: a server's history replay of an earlier run, not an error.
    earlier = checks["foreign"]
    ignored = f"; ignored {_n(earlier)} lines of earlier runs (history replayed)" if earlier else ""
    return (
        "sequence checks",
        f"loss {checks['losses']}  duplicates {checks['duplicates']}  reorders {checks['reorders']}  "
        f"malformed {checks['malformed_total']}   "
        f"({_n(checks['sampled_lines'])} lines on {checks['sampled_receivers']} sampled receivers{ignored})",
    )


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    return [f"  {name:<{width}}  {value}".rstrip() for name, value in rows]


def to_text(report: Json) -> str:
    """The report for a terminal: parameters, figures, checks, and failures in capitals."""
    params = report["params"]
    mode = report["mode"]
    results = report["results"]
    lines = [
        f"gchat.bench {mode}: {params['proto']} protocol at {params['host']}:"
        + ",".join(str(port) for port in params["ports"])
        + f" room {params['room']}, {params['size']}-byte lines, {params['procs']} process(es)"
    ]
    rows: list[tuple[str, str]] = []
    if not _measured(mode, results):
        pass
    elif mode in ("throughput", "latency"):
        lines.append(
            f"{params['clients']} clients, {params['senders']} senders, window {params['window']}"
            + (f", {params['rate']:g} lines/s" if mode == "latency" else "")
            + f", {params['warmup']:g} s warm-up"
        )
        rows += _stream_rows(results, mode)
    elif mode == "slow":
        lines.append(
            f"{params['clients']} clients, {params['senders']} senders, {params['rate']:g} lines/s; "
            "then the same with one more client that never reads"
        )
        for name, key in (("without", "baseline"), ("with the slow client", "with_slow_client")):
            rows.append((f"[{name}]", ""))
            rows += _stream_rows(results[key], "latency")
        ratio = results["p99_ratio"]
        rows.append(("[p99 with / without]", f"{ratio:.2f}x" if ratio is not None else "n/a"))
        dropped = results["slow_client_dropped"]
        rows.append(("[slow client]", "dropped by the server" if dropped else "still connected at the end"))
    elif mode == "fanout":
        reach = results["reach_all_ms"]
        rows.append(
            ("clients", f"{_n(results['clients'])}   (connected and ready in {results['connect_s']:.2f} s)")
        )
        if reach["median"] is not None:
            rows.append(
                (
                    "time to reach all",
                    f"median {reach['median']:.3f} ms  max {reach['max']:.3f} ms   "
                    f"({results['messages']} lines)",
                )
            )
        rss = results["server_rss_kb"]
        if rss:
            rows.append(
                (
                    "server RSS",
                    f"{_n(rss['before'])} KiB before, {_n(rss['after'])} KiB after: "
                    f"{rss['per_connection']} KiB per connection",
                )
            )
        checks = results["checks"]
        rows.append(("deliveries counted", f"{_n(checks['delivered'])} of {_n(checks['expected'])} expected"))
        rows.append(_check_row(checks))
    elif mode == "capacity":
        lines.append(
            f"{params['senders']} senders, {params['messages']} lines each per step, limit p95 "
            f"{results['limit_ms']:g} ms"
        )
        for step in results["steps"]:
            value = (
                f"p95 {step['p95_ms']:.3f} ms  median {step['median_ms']:.3f}  max {step['max_ms']:.3f}"
                if step["p95_ms"] is not None
                else "no lines"
            )
            if step["generator_cpu"] is not None:
                value += f"   (generator cpu {step['generator_cpu'] * 100:.0f}%)"

            rows.append(
                (
                    f"{_n(step['clients'])} clients",
                    value + (f"   ERROR: {step['error']}" if step["error"] else ""),
                )
            )
        best = results["max_clients_under_limit"]
        rows.append(
            (
                "largest room under limit",
                (_n(best) if best is not None else "none")
                + (
                    ""
                    if results["limit_reached"]
                    else "   (the limit was never reached: raise --max-clients)"
                ),
            )
        )
        checks = results["checks"]
        rows.append(("deliveries counted", f"{_n(checks['delivered'])} of {_n(checks['expected'])} expected"))
        rows.append(_check_row(checks))
    if mode in ("fanout", "capacity"):
        rows += _cpu_rows(report["generator"]["cpu"])
    lines += _table(rows)
    lines += [f"WARNING: {line}" for line in warnings(report)]
    for error in report["errors"]:
        lines.append(f"ERROR: {error}")
    if report["failures"]:
        lines.append("CHECKS FAILED: " + "; ".join(report["failures"]))
    elif not report["errors"]:
        lines.append("checks passed: every expected line arrived, once, in order, intact")
    return "\n".join(lines)


def warnings(report: Json) -> list[str]:
    return [
        f"generator worker {worker} used over {SATURATED:.0%} of a core: "
        "it may be the bottleneck (try --procs)"
        for worker in report["generator"]["saturated_workers"]
    ]
