"""Decisions per second of ``make_decision`` as the rule set grows: 10, 100, 1,000 and
10,000 rules, with the matching rule first and last, in dev and prod.

    .venv/bin/python benchmarks/decide.py [--quick] [--cpu N] [--no-reference]

Rules match distinct capabilities, so none shadows another (prod would deny) and the
matching rule's position is chosen by the requested capability. Every decision is
allowed: the registry holds a worker of the candidate species implementing the required
control. The input is built once per case (a ``RouteInput``); the call is the gateway's
(``registry=``: per-worker controls, environments, blast radius). Every env scores blast;
prod also runs the blast gate and, with the default floors, adds the spec's
``attestation_skipped`` warning. A second set of cases (10 and 10,000 rules) requires
worker attestation, as a WCP-Full hall does: there dev and prod do the same work.

Baseline measured in the same run: the reference package ``pyhall-wcp`` 0.2.2, when it is
importable, with its own calling convention. It rescans every rule pair for shadowing on
each prod request, so its prod cases are capped: a case whose single decision is predicted
(quadratic growth from the previous size) to take longer than ``--ref-cap`` seconds is
skipped and its estimate printed instead.

Method: ``time.perf_counter``; each case is warmed up for 0.2 s, then timed in five runs
of at least ``--run-time`` seconds (at least one decision each), the runs going round-robin
over the cases so that load from other processes spreads over all of them. The median of
the five is the figure; the best of five (the least disturbed run) is printed as well. The
load average is printed before and after: on a shared machine, rerun when it is high.
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
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyhall_mcp.models import HallConfig, RouteInput
from pyhall_mcp.registry import Registry
from pyhall_mcp.router import make_decision
from pyhall_mcp.rules import RuleSet, load_rules_from_dict

SIZES = (10, 100, 1_000, 10_000)
ENVS = ("dev", "prod")
POSITIONS = ("first", "last")
SPECIES = "wrk.bench.worker"
CONTROL = "ctrl.obs.audit-log-append-only"
RUNS = 5

Key = tuple[int, str, str]  # (rules, env, position)


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


def _measure_all(calls: dict[Any, Callable[[], Any]], run_time: float) -> dict[Any, list[float]]:
    """Decisions/s of each call in each of RUNS runs.

    Runs go round-robin over the calls, so a burst of load from another process lands
    on several cases instead of skewing one of them.
    """
    rates: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(RUNS):
        for key, call in calls.items():
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
            rates[key].append(count / (now - start))
    return rates


def _warm(call: Callable[[], Any], seconds: float = 0.2) -> float:
    """Run ``call`` for about ``seconds``; return the time of one call."""
    start = time.perf_counter()
    count = 0
    while True:
        call()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / count


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _ours(run_time: float) -> tuple[dict[Key, list[float]], dict[Key, list[float]]]:
    """Rates of every case with the default floors, and of the attested cases.

    Attested: the hall requires worker attestation (a WCP-Full floor) and the worker's
    digest is registered, so prod checks it instead of adding the spec's
    ``attestation_skipped`` warning; dev checks it too. Only 10 and 10,000 rules.
    """
    registry = Registry()
    registry.enroll(_record())
    digest = "ab" * 32
    registry.set_attestation("org.bench.worker", digest, lambda: digest)
    attested = HallConfig(require_worker_attestation=True)
    calls: dict[tuple[Key, bool], Callable[[], Any]] = {}
    for n in SIZES:
        rules = load_rules_from_dict(_rule_doc(n))
        assert isinstance(rules, RuleSet) and rules.shadowed == ()
        for env in ENVS:
            for position in POSITIONS:
                for config in (None, attested) if n in (SIZES[0], SIZES[-1]) else (None,):
                    inp = RouteInput(**_fields(n, position, env))
                    probe = make_decision(inp, rules, registry=registry, hall_config=config)
                    assert not probe.denied, probe.deny_reason_if_denied
                    assert probe.worker_attestation_checked is (config is not None)
                    want = f"rr-bench-{0 if position == 'first' else n - 1:05d}"
                    assert probe.matched_rule_id == want
                    call = partial(make_decision, inp, rules, registry=registry, hall_config=config)
                    _warm(call)
                    calls[(n, env, position), config is not None] = call
    rates = _measure_all(calls, run_time)
    plain = {key: r for (key, with_attestation), r in rates.items() if not with_attestation}
    return plain, {key: r for (key, with_attestation), r in rates.items() if with_attestation}


def _reference_module() -> Any:
    try:
        import pyhall  # the reference, pyhall-wcp
        import pyhall.router
    except ImportError:
        return None
    return pyhall


def _reference(
    ref: Any, run_time: float, cap: float
) -> tuple[dict[Key, list[float]], dict[Key, float]]:
    """Reference rates per case, and the predicted seconds per decision of skipped cases.

    Sizes go in increasing order; a case is skipped when its single decision, predicted
    from the previous size (prod rescans every pair of rules: quadratic; dev: linear),
    would take longer than ``cap`` seconds.
    """
    registry = ref.Registry()
    registry.enroll(_record())
    controls, available = registry.controls_present(), registry.worker_available
    rates: dict[Key, list[float]] = {}
    skipped: dict[Key, float] = {}
    previous: dict[tuple[str, str], tuple[int, float]] = {}
    for n in SIZES:
        rules = ref.load_rules_from_dict(_rule_doc(n))
        calls: dict[Key, Callable[[], Any]] = {}
        for env in ENVS:
            for position in POSITIONS:
                if (env, position) in previous:
                    size, seconds = previous[env, position]
                    estimate = seconds * (n / size) ** (2 if env == "prod" else 1)
                    if estimate > cap:
                        skipped[n, env, position] = estimate
                        continue
                inp = ref.RouteInput(**_fields(n, position, env))
                probe = ref.make_decision(inp, rules, controls, available)
                assert not probe.denied, probe.deny_reason_if_denied
                call = partial(ref.make_decision, inp, rules, controls, available)
                previous[env, position] = (n, _warm(call))
                calls[n, env, position] = call
        rates |= _measure_all(calls, run_time)
    return rates, skipped


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

    ours, attested = _ours(run_time)
    ref = None if args.no_reference else _reference_module()
    theirs, skipped = _reference(ref, run_time, args.ref_cap) if ref is not None else ({}, {})

    columns = [(env, pos) for env in ENVS for pos in POSITIONS]
    header = f"{'rules':>7} | " + " | ".join(f"{env + ' ' + pos:>12}" for env, pos in columns)

    def table(
        title: str, rates: dict[Key, list[float]], pick: Callable[[list[float]], float]
    ) -> None:
        print(title)
        print(header)
        print("-" * len(header))
        for n in SIZES:
            if not any((n, *c) in rates for c in columns):
                continue
            cells = [_fmt(pick(rates[n, *c]) if (n, *c) in rates else None) for c in columns]
            print(f"{n:>7,} | " + " | ".join(f"{cell:>12}" for cell in cells))
        print()

    median, best = statistics.median, max
    table(
        "pyhall_mcp.make_decision, decisions/s, median of 5 (registry=, RouteInput built once)",
        ours,
        median,
    )
    table("pyhall_mcp.make_decision, decisions/s, best of 5 (least disturbed run)", ours, best)
    table(
        "pyhall_mcp.make_decision with require_worker_attestation (a WCP-Full floor), "
        "decisions/s, median of 5",
        attested,
        median,
    )
    if ref is not None:
        table(f"reference pyhall-wcp {ref.__version__}, decisions/s, median of 5", theirs, median)
        for (n, env, pos), seconds in skipped.items():
            print(f"  skipped {n:,} rules {env} {pos}: ~{seconds:,.1f} s per decision predicted")
        print()
    else:
        print("(reference pyhall-wcp not importable: no baseline)\n")

    def m(n: int, env: str, pos: str) -> float:
        return median(ours[n, env, pos])

    print("ratios (pyhall_mcp, medians)")
    for env in ENVS:
        for pos in POSITIONS:
            ratio = m(SIZES[0], env, pos) / m(SIZES[-1], env, pos)
            print(f"  {env} {pos}: a decision at 10,000 rules costs {ratio:.2f}x one at 10 rules")
    for n in SIZES:
        parts = [f"{pos} {m(n, 'prod', pos) / m(n, 'dev', pos):.2f}" for pos in POSITIONS]
        print(f"  {n:>6,} rules, prod/dev throughput: " + ", ".join(parts))
    for n in (SIZES[0], SIZES[-1]):
        parts = [
            f"{pos} {median(attested[n, 'prod', pos]) / median(attested[n, 'dev', pos]):.2f}"
            for pos in POSITIONS
        ]
        print(f"  {n:>6,} rules, prod/dev throughput, attestation required: " + ", ".join(parts))
    everything = [median(r) for r in ours.values()]
    print(f"  medians range {min(everything):,.0f} .. {max(everything):,.0f} decisions/s, one core")
    if ref is not None:
        print("\nratios (pyhall_mcp / reference throughput, medians, same run)")
        for n in SIZES:
            parts = []
            for env, pos in columns:
                if (n, env, pos) in theirs:
                    parts.append(
                        f"{env} {pos} {m(n, env, pos) / median(theirs[n, env, pos]):,.1f}x"
                    )
                else:
                    parts.append(f"{env} {pos} n/a")
            print(f"  {n:>6,} rules: " + ", ".join(parts))
    print(f"\nload average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
