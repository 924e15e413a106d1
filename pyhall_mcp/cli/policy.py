"""``pyhall policy show|test``: the loaded policy set and its test cases."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import EXIT_NO, EXIT_OK, add_hall_arg, add_json_arg, emit, hall_dir

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("policy", help="show the hall's policies or run policy tests")
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    show = sub.add_parser("show", help="print the loaded policy statements and the policy version")
    add_hall_arg(show)
    add_json_arg(show)
    show.set_defaults(func=run_show)

    test = sub.add_parser(
        "test",
        help="run a table of policy test cases; exit 0 when all pass, 1 otherwise",
        description="FILE is YAML `{cases: [{name, context, expect: allow|deny|require_human}]}`.",
    )
    test.add_argument(
        "file", metavar="FILE", help="policy test case file (e.g. policies/tests.yaml)"
    )
    add_hall_arg(test)
    add_json_arg(test)
    test.set_defaults(func=run_test)


def _engine(hall: Path) -> Any:
    """The engine the gateway would load for ``hall`` (launch settings applied)."""
    from ..hall import HallSettings, load_settings, overrides_from_environ, policy_for
    from ..layout import HallLayout
    from ..registry import Registry

    layout = HallLayout.for_hall(hall)
    # A bare directory of policies (no hall.yaml) is checked with the default settings.
    settings = (
        load_settings(layout, overrides_from_environ())
        if layout.hall_yaml.is_file()
        else HallSettings()
    )
    registry = Registry.load(layout.workers_dir) if layout.workers_dir.is_dir() else Registry()
    return policy_for(layout, settings, registry.records, registry.withdrawn)


def run_show(args: argparse.Namespace) -> int:
    hall = hall_dir(args)
    engine = _engine(hall)
    statements = engine.describe()
    warnings = list(getattr(engine, "warnings", []))
    data = {
        "hall": str(hall),
        "engine": type(engine).__name__,
        "policy_version": engine.version,
        "statements": statements,
        "warnings": warnings,
    }
    count = f"{type(engine).__name__}, {len(statements)} statements"
    lines = [f"policy version {engine.version} ({count})"]
    for stmt in statements:
        effect = str(stmt.get("effect", "?"))
        level = f" [{stmt['supervisor_level']}]" if stmt.get("supervisor_level") else ""
        lines.append(f"  {effect:<13} {stmt.get('id')}{level}  {stmt.get('description', '')}")
        for part in ("when", "arguments"):
            if stmt.get(part):
                lines.append(f"  {'':<13}   {part}: {_inline(stmt[part])}")
    if not statements:
        lines.append("  (no statements: every call is denied)")
    lines += [f"warning: {w}" for w in warnings]
    emit(args, data, "\n".join(lines))
    return EXIT_OK


def run_test(args: argparse.Namespace) -> int:
    from ..policy import run_policy_tests

    hall = hall_dir(args)
    report = run_policy_tests(_engine(hall), Path(args.file))
    lines = []
    for result in report.results:
        mark = "PASS" if result.passed else "FAIL"
        line = f"{mark}  {result.name}"
        if not result.passed:
            wanted = result.expected
            if result.reason_contains is not None:
                wanted += f" with a reason containing {result.reason_contains!r}"
            line += f"\n      expected {wanted}, got {result.actual} ({result.reason})"
        lines.append(line)
    failed = len(report.failures)
    lines.append(
        f"{len(report.results) - failed} passed, {failed} failed"
        f" (policy version {report.policy_version})"
    )
    emit(args, report.as_dict(), "\n".join(lines))
    return EXIT_OK if report.passed else EXIT_NO


def _inline(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)
