"""Decisions per second of ``make_decision`` as the rule set grows: 10, 100, 1,000 and
10,000 rules, with the matching rule first and last, in dev and prod.

    .venv/bin/python benchmarks/decide.py [--quick] [--cpu N] [--no-reference]

Rules match distinct capabilities, so none shadows another (prod would deny) and the
matching rule's position is chosen by the requested capability. Every decision is
allowed: the registry holds a worker of the candidate species implementing the required
control. The input is built once per case (a ``RouteInput``); the call is the gateway's
(``registry=``: per-worker controls, environments, blast radius). In prod the blast gate
runs and the attestation-skipped event is added, as the spec requires.

Baseline measured in the same run: the reference package ``pyhall-wcp`` 0.2.2, when it is
importable, with its own calling convention. It rescans every rule pair for shadowing on
each prod request, so its prod cases are capped: a case whose single decision is predicted
(quadratic growth from the previous size) to take longer than ``--ref-cap`` seconds is
skipped and its estimate printed instead.

Method: ``time.perf_counter``; a warm-up; five runs of at least ``--run-time`` seconds
each (at least one decision); the median rate is reported. Load average is printed before
and after: on a shared machine, rerun when it is high.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyhall_mcp.models import RouteInput
from pyhall_mcp.registry import Registry
from pyhall_mcp.router import make_decision
from pyhall_mcp.rules import RuleSet, load_rules_from_dict

SIZES = (10, 100, 1_000, 10_000)
ENVS = ("dev", "prod")
POSITIONS = ("first", "last")
SPECIES = "wrk.bench.worker"
CONTROL = "ctrl.obs.audit-log-append-only"
RUNS = 5


def _rule_doc(n: int) -> dict[str, Any]:
    return {
        "rules": [
            {
                "rule_id": f"rr-bench-{i:05d}",
                "match": {"capability_id": f"cap.bench.c{i:05d}", "env": {"in": ["dev", "prod"]}},
                "decision": {
                    "candidate_workers_ranked": [{"worker_species_id": SPECIES, "score_hint": 1.0}],
                    "required_controls_suggested": [CONTROL],
                },
            }
            for i in range(n)
        ]
    }


def _record() -> dict[str, Any]:
    return {
        "worker_id": "org.bench.worker",
        "worker_species_id": SPECIES,
        "capabilities": ["cap.bench.c00000"],
        "currently_implements": [CONTROL],
        "allowed_environments": ["dev", "prod"],
        "privilege_envelope": {},
    }


def _fields(n: int, position: str, env: str) -> dict[str, Any]:
    index = 0 if position == "first" else n - 1
    return {
        "capability_id": f"cap.bench.c{index:05d}",
        "env": env,
        "data_label": "PUBLIC",
        "tenant_risk": "low",
        "qos_class": "P2",
        "tenant_id": "bench-tenant",
        "correlation_id": "bench-correlation-0001",
        "request": {"text": "hello"},
    }


def _measure(call: Callable[[], Any], run_time: float, warmup: int) -> tuple[float, float]:
    """(median decisions/s over RUNS runs, seconds of one decision at that median)."""
    for _ in range(warmup):
        call()
    rates = []
    for _ in range(RUNS):
        gc.collect()
        count = 0
        start = time.perf_counter()
        deadline = start + run_time
        while True:
            call()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(count / (now - start))
    rate = statistics.median(rates)
    return rate, 1 / rate


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _ours(n: int, run_time: float) -> dict[tuple[str, str], float]:
    rules = load_rules_from_dict(_rule_doc(n))
    assert isinstance(rules, RuleSet) and rules.shadowed == ()
    registry = Registry()
    registry.enroll(_record())
    out = {}
    for env in ENVS:
        for position in POSITIONS:
            inp = RouteInput(**_fields(n, position, env))
            probe = make_decision(inp, rules, registry=registry)
            assert not probe.denied, probe.deny_reason_if_denied
            want = f"rr-bench-{0 if position == 'first' else n - 1:05d}"
            assert probe.matched_rule_id == want
            out[env, position], _ = _measure(
                lambda inp=inp: make_decision(inp, rules, registry=registry), run_time, 2000
            )
    return out


def _reference_module() -> Any:
    try:
        import pyhall  # the reference, pyhall-wcp
        import pyhall.router
    except ImportError:
        return None
    return pyhall


def _reference(
    ref: Any,
    n: int,
    run_time: float,
    cap: float,
    previous: dict[tuple[str, str], tuple[int, float]],
) -> tuple[dict[tuple[str, str], float | None], dict[tuple[str, str], float]]:
    """Reference rates (None: skipped) and predicted seconds per decision for skipped ones."""
    rules = ref.load_rules_from_dict(_rule_doc(n))
    registry = ref.Registry()
    registry.enroll(_record())
    controls, available = registry.controls_present(), registry.worker_available
    rates: dict[tuple[str, str], float | None] = {}
    predicted: dict[tuple[str, str], float] = {}
    for env in ENVS:
        for position in POSITIONS:
            key = (env, position)
            if key in previous:
                # Prod rescans every pair of rules per request: quadratic; dev scans: linear.
                growth = (n / previous[key][0]) ** (2 if env == "prod" else 1)
                estimate = previous[key][1] * growth
                if estimate > cap:
                    rates[key], predicted[key] = None, estimate
                    continue
            inp = ref.RouteInput(**_fields(n, position, env))
            probe = ref.make_decision(inp, rules, controls, available)
            assert not probe.denied, probe.deny_reason_if_denied
            start = time.perf_counter()
            ref.make_decision(inp, rules, controls, available)
            single = time.perf_counter() - start
            warmup = 0 if single > 0.05 else 200
            rate, seconds = _measure(
                lambda inp=inp: ref.make_decision(inp, rules, controls, available),
                run_time,
                warmup,
            )
            rates[key] = rate
            previous[key] = (n, seconds)
    return rates, predicted


def _fmt(rate: float | None) -> str:
    if rate is None:
        return "skipped"
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:,.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    parser.add_argument("--no-reference", action="store_true", help="skip the pyhall-wcp baseline")
    parser.add_argument("--run-time", type=float, default=None, help="seconds per timed run")
    parser.add_argument(
        "--ref-cap", type=float, default=2.0, help="skip reference cases slower than this (s)"
    )
    args = parser.parse_args(argv)
    run_time = args.run_time or (0.05 if args.quick else 0.25)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average before: {_load()}")
    print(f"method: median of {RUNS} runs of >= {run_time}s each, after a warm-up\n")

    ours: dict[int, dict[tuple[str, str], float]] = {}
    for n in SIZES:
        ours[n] = _ours(n, run_time)

    ref = None if args.no_reference else _reference_module()
    theirs: dict[int, dict[tuple[str, str], float | None]] = {}
    estimates: dict[int, dict[tuple[str, str], float]] = {}
    if ref is not None:
        previous: dict[tuple[str, str], tuple[int, float]] = {}
        for n in SIZES:
            theirs[n], estimates[n] = _reference(ref, n, run_time, args.ref_cap, previous)

    columns = [(env, pos) for env in ENVS for pos in POSITIONS]
    header = f"{'rules':>7} | " + " | ".join(f"{env + ' ' + pos:>12}" for env, pos in columns)
    print("pyhall_mcp.make_decision, decisions/s (registry=, RouteInput built once)")
    print(header)
    print("-" * len(header))
    for n in SIZES:
        print(f"{n:>7,} | " + " | ".join(f"{_fmt(ours[n][c]):>12}" for c in columns))
    if ref is not None:
        print(f"\nreference pyhall-wcp {ref.__version__}, decisions/s (its callables)")
        print(header)
        print("-" * len(header))
        for n in SIZES:
            print(f"{n:>7,} | " + " | ".join(f"{_fmt(theirs[n][c]):>12}" for c in columns))
        for n in SIZES:
            for (env, pos), seconds in estimates[n].items():
                print(
                    f"  skipped {n:,} rules {env} {pos}: ~{seconds:,.1f} s per decision predicted"
                )
    else:
        print("\n(reference pyhall-wcp not importable: no baseline)")

    print("\nratios (pyhall_mcp)")
    for env in ENVS:
        for pos in POSITIONS:
            ratio = ours[SIZES[0]][env, pos] / ours[SIZES[-1]][env, pos]
            print(f"  {env} {pos}: 10 rules / 10,000 rules = {ratio:.2f}x slower at 10,000")
    for n in SIZES:
        for pos in POSITIONS:
            ratio = ours[n]["prod", pos] / ours[n]["dev", pos]
            print(f"  {n:>6,} rules {pos}: prod / dev = {ratio:.2f}")
    best = max(rate for table in ours.values() for rate in table.values())
    worst = min(rate for table in ours.values() for rate in table.values())
    print(f"  range: {worst:,.0f} .. {best:,.0f} decisions/s on one core")
    if ref is not None:
        print("\nratios (pyhall_mcp / reference, same run)")
        for n in SIZES:
            parts = []
            for c in columns:
                r = theirs[n][c]
                parts.append(f"{c[0]} {c[1]} " + (f"{ours[n][c] / r:,.1f}x" if r else "n/a"))
            print(f"  {n:>6,} rules: " + ", ".join(parts))
    print(f"\nload average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
