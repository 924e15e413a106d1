"""``pyhall validate``: check everything a hall holds, or run routing fixtures."""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from ..errors import ConfigError, PyhallError, unreadable
from ._common import (
    EXIT_NO,
    CommandFailed,
    add_hall_arg,
    add_json_arg,
    emit,
    hall_dir,
)

#: Fields that differ between identical decisions; masked in golden snapshots.
_VOLATILE = (
    "decision_id",
    "timestamp",
    "pending_approval_id",
    "approval_expires_at",
    "receipt_hash",
)


@dataclass
class Problem:
    severity: str  # "error" | "warning"
    file: str | None
    location: str | None
    message: str
    fix: str | None = None

    @classmethod
    def of(cls, exc: PyhallError, severity: str = "error") -> Problem:
        if isinstance(exc, ConfigError):
            return cls(severity, exc.file, exc.location, exc.message, exc.fix)
        return cls(severity, None, None, str(exc))

    def line(self) -> str:
        where = ":".join(p for p in (self.file, self.location) if p) or "(hall)"
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{where}: {self.severity}: {self.message}{fix}"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a hall (rules, policies, workers, keys, attestation) or run routing fixtures",
        description="With no RULES/TESTS: check everything the hall holds and print each "
        "problem with its file, location and fix (exit 1 on any error). With RULES TESTS: run "
        'routing fixtures ({"tests": [{"test_id", "input", "expect"}]}) and golden snapshots.',
    )
    parser.add_argument("rules", nargs="?", help="a rule file (fixture mode)")
    parser.add_argument("tests", nargs="?", help="a fixture file (fixture mode)")
    parser.add_argument(
        "--goldens", metavar="FILE", help="golden snapshot file (default: TESTS with .goldens.json)"
    )
    parser.add_argument(
        "--update-goldens", action="store_true", help="rewrite the golden snapshots from this run"
    )
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rules or args.tests:
        if not (args.rules and args.tests):
            raise CommandFailed("fixture mode takes both RULES and TESTS", exit_code=2)
        if args.hall:
            raise CommandFailed("fixture mode reads RULES and TESTS, not a hall: drop --hall", 2)
        return _run_fixtures(args)
    problems = check_hall(hall_dir(args))
    errors = [p for p in problems if p.severity == "error"]
    data = {
        "ok": not errors,
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        "problems": [asdict(p) for p in problems],
    }
    lines = [p.line() for p in problems]
    lines.append(
        f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
        + ("" if errors else ": the hall is valid")
    )
    emit(args, data, "\n".join(lines))
    return EXIT_NO if errors else 0


def check_hall(root: Path) -> list[Problem]:
    """Every problem in the hall at ``root``; each part checked on its own."""
    try:
        return _check_hall(root)
    except OSError as exc:  # a directory pyhall's user cannot list, say
        return [Problem.of(unreadable(exc))]


def _check_hall(root: Path) -> list[Problem]:
    from ..hall import (
        load_settings,
        overrides_from_environ,
        readiness_problems,
        rule_files,
        settings_warnings,
    )
    from ..layout import HallLayout
    from ..registry import Registry
    from ..rules import load_rule_set
    from ..signing import Keyring

    layout = HallLayout.for_hall(root)
    problems: list[Problem] = []
    try:
        settings = load_settings(layout, overrides_from_environ())
    except ConfigError as exc:
        return [Problem.of(exc)]  # nothing else can be read without hall.yaml
    try:
        rules = load_rule_set(rule_files(layout, settings.rules))
        for item in rules.shadowed:
            problems.append(
                Problem(
                    "error",
                    rules.source,
                    f"rule_id: {item['shadowed']}",
                    item["reason"],
                    "reorder or remove the shadowed rule",
                )
            )
    except ConfigError as exc:
        problems.append(Problem.of(exc))
    registry = Registry()
    if layout.workers_dir.is_dir():
        registry = Registry.load(layout.workers_dir)
        problems.extend(Problem.of(p) for p in registry.problems)
    for record in registry.records:
        source = registry.source_of(record.worker_id)
        for warning in record.warnings():
            problems.append(Problem("warning", source, "worker_id", warning))
        if record.runner is not None:
            from ..runners import build_runner

            try:
                build_runner(
                    record.runner,
                    registry.directory_of(record.worker_id) or layout.workers_dir,
                    source=source,
                )
            except ConfigError as exc:
                problems.append(Problem.of(exc))
    problems.extend(_check_policies(layout, settings, registry))
    problems.extend(_check_keys(layout))
    problems += [
        Problem("warning", None, None, w) for w in settings_warnings(settings, registry.records)
    ]
    problems.extend(_check_state(layout, settings))
    with contextlib.suppress(ConfigError):  # an unreadable keyring is reported just above
        trusted = Keyring.load(layout.trusted_keys)
        problems.extend(Problem.of(p) for p in readiness_problems(layout, settings, trusted))
    problems.extend(
        _check_attestation(layout, registry, settings.floors.require_worker_attestation)
    )
    return problems


def _check_policies(layout: Any, settings: Any, registry: Any) -> list[Problem]:
    from ..hall import policy_for
    from ..policy import NoPolicyEngine, YamlPolicyEngine, policy_test_files, run_policy_tests

    try:
        engine = policy_for(layout, settings, registry.records, registry.withdrawn)
    except ConfigError as exc:
        return [Problem.of(exc)]
    if isinstance(engine, NoPolicyEngine):
        return [
            Problem(
                "warning",
                str(layout.policies_dir),
                None,
                "no policy files: the policy gate denies every call",
                "add policies/*.yaml",
            )
        ]
    problems = []
    if isinstance(engine, YamlPolicyEngine):
        problems += [Problem.of(notice, "warning") for notice in engine.notices]
    for cases in policy_test_files(layout.policies_dir):
        try:
            report = run_policy_tests(engine, cases)
        except ConfigError as exc:
            problems.append(Problem.of(exc))
            continue
        for failure in report.failures:
            problems.append(
                Problem(
                    "error",
                    str(cases),
                    f"case {failure.name}",
                    f"expected {failure.expected}, got {failure.actual}",
                    "fix the policy or the expectation",
                )
            )
    return problems


def _check_keys(layout: Any) -> list[Problem]:
    """The trusted keys (the hall's signing key is checked with its state, below)."""
    from ..signing import Keyring

    try:
        Keyring.load(layout.trusted_keys)
    except ConfigError as exc:
        return [Problem.of(exc)]
    return []


def _check_state(layout: Any, settings: Any) -> list[Problem]:
    """What would refuse the gateway's start (the state directory's stores and keys, the
    tracing mode): said here too."""
    from ..hall import check_state
    from ..otel import configure_tracing

    problems = []
    for check in (lambda: check_state(layout, settings), lambda: configure_tracing(install=False)):
        try:
            check()
        except PyhallError as exc:
            problems.append(Problem.of(exc))
    return problems


def _check_attestation(layout: Any, registry: Any, required: bool) -> list[Problem]:
    from ..attestation import load_deny_list, verify_package
    from ..errors import AttestationError
    from ..signing import Keyring

    try:
        keyring = Keyring.load(layout.trusted_keys)
        deny_list = load_deny_list(layout.attestation_deny_list)
    except ConfigError:
        return []  # reported by _check_keys
    problems = []
    for record in registry.records:
        if record.runner is None:
            continue
        directory = registry.directory_of(record.worker_id)
        try:
            verify_package(
                directory,
                keyring=keyring,
                deny_list=deny_list,
                expected_worker_id=record.worker_id,
                record=record.model_dump(exclude_none=True),
            )
        except AttestationError as exc:
            fix = (
                f"sign it with a key trusted for {record.worker_id.rsplit('.', 1)[0]}: add that "
                "namespace to a key's `namespaces` in keys/trusted.yaml, or re-scaffold the "
                "worker under a namespace the hall's key may sign"
                if exc.code == "ATTEST_NAMESPACE_INVALID"
                else "sign it: pyhall attest sign-all --hall DIR --key KEY (or --new-key)"
            )
            problems.append(
                Problem(
                    "error" if required else "warning",
                    registry.source_of(record.worker_id),
                    "attestation",
                    f"{exc.code}: {exc.message}",
                    fix,
                )
            )
    return problems


# -- fixtures (the reference's format) -------------------------------------------------


def _run_fixtures(args: argparse.Namespace) -> int:
    from .._yaml import load_document
    from ..models import HallConfig
    from ..router import make_decision
    from ..rules import load_rules

    rules = load_rules(args.rules)
    doc = load_document(args.tests)
    _check_fixtures(doc, args.tests)
    registry = doc.get("registry") or {}
    controls = set(registry.get("controls_present", []))
    available = set(registry.get("workers_available", []))
    try:
        config = HallConfig.model_validate(doc.get("hall_config") or {})
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        message, location = exc.errors()[0]["msg"], f"hall_config.{where}"
        raise ConfigError(message, file=args.tests, location=location) from None
    updating = args.update_goldens
    goldens_path = Path(args.goldens or Path(args.tests).with_suffix(".goldens.json"))
    goldens = _load_goldens(goldens_path) if goldens_path.exists() else {}
    results, snapshots = [], {}
    for case in doc["tests"]:
        test_id = case["test_id"]
        decision = make_decision(
            case["input"],
            rules,
            registry_controls_present=controls,
            registry_worker_available=available.__contains__,
            hall_config=config,
        )
        dumped = decision.model_dump(mode="json")
        failures = [
            f"{key}: expected {want!r}, got {_field(dumped, key)!r}"
            for key, want in (case.get("expect") or {}).items()
            if _field(dumped, key) != want
        ]
        if failures and decision.denied:  # why it was denied says what to fix
            failures.append(f"denied {decision.deny_code}: {decision.deny_message}")
        snapshot = _masked(dumped)
        snapshots[test_id] = snapshot
        if not updating and test_id in goldens and goldens[test_id] != snapshot:
            failures.append("differs from its golden snapshot")
        results.append({"test_id": test_id, "ok": not failures, "failures": failures})
    failed = [r for r in results if not r["ok"]]
    written = updating and not failed  # a golden records a checked decision, not a failing one
    if written:
        goldens_path.write_text(json.dumps(snapshots, indent=2, sort_keys=True) + "\n")
    lines = [
        f"{'PASS' if r['ok'] else 'FAIL'} {r['test_id']}"
        + "".join(f"\n     {f}" for f in r["failures"])
        for r in results
    ]
    lines.append(
        f"{len(results) - len(failed)} passed, {len(failed)} failed"
        + (f"; goldens written to {goldens_path}" if written else "")
        + ("; goldens NOT written: fix the failures first" if updating and failed else "")
    )
    emit(args, {"ok": not failed, "results": results}, "\n".join(lines))
    return EXIT_NO if failed else 0


def _load_goldens(path: Path) -> dict[str, Any]:
    try:
        goldens = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not UTF-8, or not JSON
        goldens = None
    if not isinstance(goldens, dict):
        raise ConfigError(
            "not a JSON mapping of test ids to snapshots",
            file=str(path),
            fix="rewrite it with --update-goldens",
        )
    return goldens


def _check_fixtures(doc: Any, source: str) -> None:
    """The fixture file's shape, so that a case that checks nothing cannot pass."""

    def fail(where: str, message: str) -> NoReturn:
        fix = 'see the format in `pyhall validate --help`: {"tests": [{"test_id", "input", ...}]}'
        raise ConfigError(message, file=source, location=where, fix=fix)

    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        fail("tests", 'expected {"tests": [...]}')
    for key in ("registry", "hall_config"):
        if not isinstance(doc.get(key) or {}, dict):
            fail(key, "must be a mapping")
    seen: set[str] = set()
    for index, case in enumerate(doc["tests"]):
        where = f"tests[{index}]"
        if not isinstance(case, dict):
            fail(where, "each case must be a mapping")
        test_id = case.get("test_id")
        if not isinstance(test_id, str) or not test_id or test_id in seen:
            fail(f"{where}.test_id", "must be a unique, non-empty string")
        seen.add(test_id)
        if not isinstance(case.get("input"), dict):
            fail(f"{where}.input", "must be a mapping (the RouteInput)")
        if not isinstance(case.get("expect"), dict) or not case["expect"]:
            fail(f"{where}.expect", "must name at least one field to check")


def _field(decision: dict[str, Any], key: str) -> Any:
    if key in ("deny_code", "deny_reason_code"):
        return (decision.get("deny_reason_if_denied") or {}).get("code")
    return decision.get(key)


def _masked(decision: dict[str, Any]) -> dict[str, Any]:
    masked = {
        k: ("<masked>" if k in _VOLATILE and v is not None else v) for k, v in decision.items()
    }
    masked["telemetry_envelopes"] = [
        {k: ("<masked>" if k == "timestamp" else v) for k, v in event.items()}
        for event in decision.get("telemetry_envelopes", [])
    ]
    return masked
