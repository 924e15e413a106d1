"""Every ``pyhall`` command as a subprocess on a temporary hall: success, each error
class, and --json output parsed back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pyhall_mcp.signing import Keyring, SigningKey

PYHALL = [sys.executable, "-m", "pyhall_mcp.cli"]


def pyhall(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")}
    full_env.update(env or {})
    return subprocess.run(
        [*PYHALL, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def as_json(result) -> dict:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("cli") / "hall"
    result = pyhall("init", str(target), "--json")
    assert result.returncode == 0, result.stderr
    data = as_json(result)
    assert data["hall"] == str(target)
    assert len(data["signed_workers"]) == 5
    return target


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def test_help_lists_exit_codes() -> None:
    result = pyhall("--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout and "configuration error" in result.stdout


def test_version_json() -> None:
    data = as_json(pyhall("version", "--json"))
    assert data["wcp"] == "0.1" and data["mcp_sdk"].startswith("2.")


def test_unknown_command_is_a_usage_error() -> None:
    result = pyhall("frobnicate")
    assert result.returncode == 2
    no_traceback(result)


def test_usage_errors_name_the_command_and_answer_json_too() -> None:
    unknown = pyhall("status", "--json", "--bogus")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("usage: pyhall status ")
    assert as_json(unknown) == {
        "ok": False,
        "exit_code": 2,
        "error": "pyhall status: error: unrecognized arguments: --bogus",
    }
    missing = pyhall("route", "--json")
    assert missing.returncode == 2 and "--capability" in as_json(missing)["error"]
    assert pyhall("--version").stdout.startswith("pyhall ")
    out_of_range = pyhall("route", "--capability", "cap.hello.greet", "--blast-score", "1000")
    assert out_of_range.returncode == 2 and "must be from 0 to 100" in out_of_range.stderr
    assert pyhall("approvals", "list", "--limit", "-1").returncode == 2
    for bad in ("nan", "inf"):
        assert pyhall("traces", "replay", "--timeout", bad, "x.jsonl").returncode == 2


def test_init_refuses_to_overwrite(hall: Path) -> None:
    result = pyhall("init", str(hall), "--json")
    assert result.returncode == 1
    assert "not empty" in as_json(result)["error"]
    no_traceback(result)


def test_init_checks_its_source_and_leaves_nothing_when_it_fails(
    hall: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    nowhere = pyhall("init", str(target), "--from", str(tmp_path / "nope"))
    assert nowhere.returncode == 3 and "--from" in nowhere.stderr
    assert not target.exists()
    broken = tmp_path / "broken"
    shutil.copytree(hall, broken, ignore=shutil.ignore_patterns(".pyhall"))
    (broken / "hall.yaml").write_text("env: production\n")
    invalid = pyhall("init", str(target), "--from", str(broken))
    assert invalid.returncode == 3 and f"{broken / 'hall.yaml'}: env" in invalid.stderr
    assert not target.exists() and not (broken / ".pyhall").exists()
    assert pyhall("init", str(target), "--from", str(hall)).returncode == 0  # the retry works


def test_init_makes_owner_only_keys_and_new_trust(hall: Path) -> None:
    for key in (hall / ".pyhall" / "keys").glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0
    trusted = (hall / "keys" / "trusted.yaml").read_text()
    assert "pyhall init" in trusted


def test_route_allowed_and_denied(hall: Path) -> None:
    allowed = pyhall("route", "--hall", str(hall), "--capability", "cap.hello.greet", "--json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert as_json(allowed)["selected_worker_id"] == "org.demo.greeter"
    denied = pyhall("route", "--hall", str(hall), "--capability", "cap.nothing.here", "--json")
    assert denied.returncode == 1
    data = as_json(denied)
    assert data["deny_reason_if_denied"]["code"] == "DENY_NO_MATCHING_RULE"
    assert data["matched_rule_id"] == "NO_MATCH"


def test_route_checks_the_selected_workers_files(hall: Path) -> None:
    def route(path: str) -> dict:
        request = json.dumps({"path": path})
        args = ("route", "--hall", str(hall), "--capability", "cap.fs.read", "--json")
        return as_json(pyhall(*args, "--request", request))

    assert route("README.txt")["privilege_envelope_ok"] is True
    outside = route("../hall.yaml")
    assert outside["deny_reason_if_denied"]["code"] == "DENY_PRIVILEGE_ENVELOPE_VIOLATED"


def test_route_human_output_and_usage_error(hall: Path) -> None:
    result = pyhall("route", "--hall", str(hall), "--capability", "cap.hello.greet")
    assert result.stdout.startswith("ALLOWED -> org.demo.greeter")
    bad = pyhall("route", "--hall", str(hall), "--capability", "cap.x", "--request", "{nope")
    assert bad.returncode == 2 and "--request is not JSON" in bad.stderr
    no_traceback(bad)


def test_configuration_error_names_the_file(tmp_path: Path) -> None:
    result = pyhall("route", "--hall", str(tmp_path), "--capability", "cap.hello.greet", "--json")
    assert result.returncode == 3
    data = as_json(result)
    assert data["details"]["file"].endswith("hall.yaml") and data["details"]["fix"]
    no_traceback(result)


def test_bad_environment_setting_names_the_variable(hall: Path) -> None:
    result = pyhall("status", "--hall", str(hall), env={"PYHALL_REQUIRE_SIGNATORY": "maybe"})
    assert result.returncode == 3
    assert "PYHALL_REQUIRE_SIGNATORY" in result.stderr
    no_traceback(result)


def test_validate_valid_hall(hall: Path) -> None:
    result = pyhall("validate", "--hall", str(hall), "--json")
    data = as_json(result)
    assert result.returncode == 0, data
    assert data["ok"] and data["errors"] == 0


def test_validate_reports_each_problem_with_file_and_fix(hall: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    assert pyhall("init", str(broken)).returncode == 0
    (broken / "rules" / "demo.yaml").write_text(
        "rules:\n  - rule_id: a\n    match: {capabilty_id: cap.x}\n"
    )
    (broken / "workers" / "greeter" / "greeter.py").write_text("# tampered\n")
    result = pyhall("validate", "--hall", str(broken), "--json")
    assert result.returncode == 1
    problems = as_json(result)["problems"]
    messages = " | ".join(p["message"] for p in problems)
    assert "unknown match key(s): capabilty_id" in messages
    assert "ATTEST_HASH_MISMATCH" in messages
    assert all(p["file"] for p in problems if p["severity"] == "error")


def test_a_state_directory_from_the_environment_must_be_absolute(
    hall: Path, tmp_path: Path
) -> None:
    result = pyhall("status", "--hall", str(hall), env={"PYHALL_STATE_DIR": "state"})
    assert result.returncode == 3 and "PYHALL_STATE_DIR: must be an absolute path" in (
        result.stderr
    )
    # A relative --state-dir counts from where the command runs, like --hall.
    (tmp_path / "here").mkdir()
    here = subprocess.run(
        [*PYHALL, "status", "--hall", str(hall), "--state-dir", "st", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path / "here",
        env={k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")},
    )
    assert here.returncode == 0, here.stderr
    assert not (hall / "st").exists()


def test_validate_reports_a_missing_workspace(hall: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    shutil.rmtree(copy / "workspace")
    result = pyhall("validate", "--hall", str(copy), "--json")
    assert result.returncode == 1
    [problem] = [p for p in as_json(result)["problems"] if p["location"] == "workspace"]
    assert problem["file"] == str(copy / "hall.yaml") and problem["fix"]


def test_one_broken_record_takes_out_its_tool_not_the_hall(hall: Path, tmp_path: Path) -> None:
    # The demo policies hold the deleter's calls with argument conditions; with its record
    # quarantined they name a worker that is not served: the rest of the hall still serves.
    copy = tmp_path / "copy"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    record = copy / "workers" / "file-deleter" / "worker.yaml"
    record.write_text(record.read_text().replace("risk_tier: high", "risk_tier: extreme"))

    result = pyhall("validate", "--hall", str(copy), "--json")
    problems = as_json(result)["problems"]
    [error] = [p for p in problems if p["severity"] == "error"]
    assert error["file"] == str(record) and error["location"] == "risk_tier"
    notices = [p for p in problems if "quarantined org.demo.file-deleter" in p["message"]]
    assert [p["location"].partition(" ")[2] for p in notices] == [
        "(id: pol.demo.delete-needs-human)",
        "(id: pol.demo.delete-outside-workspace)",
    ]
    assert all(p["severity"] == "warning" and p["file"].endswith("files.yaml") for p in notices)

    check = subprocess.run(
        [sys.executable, "-m", "pyhall_mcp.gateway", "--hall", str(copy), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1  # the quarantine is a problem; the policy a note
    assert "4 tools" in check.stderr and "1 problem(s)" in check.stderr
    assert "note: policy:" in check.stderr and "refusing to start" not in check.stderr

    called = pyhall("call", "greet", "--args", '{"name": "Ada"}', "--hall", str(copy), "--json")
    assert called.returncode == 0, called.stderr
    gone = pyhall("call", "delete_file", "--args", '{"path": "x"}', "--hall", str(copy))
    assert gone.returncode != 0 and "delete_file" in gone.stdout + gone.stderr
    no_traceback(gone)


def test_a_policy_naming_a_worker_nobody_enrolled_still_refuses(hall: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    policy = copy / "policies" / "files.yaml"
    policy.write_text(policy.read_text().replace("org.demo.file-deleter", "org.demo.file-delter"))
    result = pyhall("validate", "--hall", str(copy), "--json")
    assert result.returncode == 1
    [error] = [p for p in as_json(result)["problems"] if p["severity"] == "error"]
    assert "'org.demo.file-delter' is not an enrolled worker or tool" in error["message"]


def test_validate_fixtures_and_goldens(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "rule_id": "r1",
                        "match": {"capability_id": "cap.a.b"},
                        "decision": {
                            "candidate_workers_ranked": [{"worker_species_id": "wrk.a.b"}]
                        },
                    }
                ]
            }
        )
    )
    base = {
        "env": "dev",
        "data_label": "PUBLIC",
        "tenant_risk": "low",
        "qos_class": "P2",
        "tenant_id": "t",
        "correlation_id": "c",
    }
    tests = tmp_path / "tests.json"
    tests.write_text(
        json.dumps(
            {
                "registry": {"controls_present": [], "workers_available": ["wrk.a.b"]},
                "tests": [
                    {
                        "test_id": "ok",
                        "input": {**base, "capability_id": "cap.a.b"},
                        "expect": {"denied": False, "selected_worker_species_id": "wrk.a.b"},
                    },
                    {
                        "test_id": "no-rule",
                        "input": {**base, "capability_id": "cap.z.z"},
                        "expect": {"denied": True, "deny_code": "DENY_NO_MATCHING_RULE"},
                    },
                ],
            }
        )
    )
    first = pyhall("validate", str(rules), str(tests), "--update-goldens")
    assert first.returncode == 0, first.stdout
    assert (tmp_path / "tests.goldens.json").exists()
    again = pyhall("validate", str(rules), str(tests), "--json")
    assert again.returncode == 0 and as_json(again)["ok"]
    tests.write_text(tests.read_text().replace('"denied": false', '"denied": true'))
    failing = pyhall("validate", str(rules), str(tests), "--json")
    assert failing.returncode == 1
    assert not as_json(failing)["results"][0]["ok"]
    # A wrong expectation of an allowed call, and of a denied one: the denial says why.
    tests.write_text(tests.read_text().replace("DENY_NO_MATCHING_RULE", "DENY_SOMETHING_ELSE"))
    goldens = (tmp_path / "tests.goldens.json").read_text()
    kept = pyhall("validate", str(rules), str(tests), "--update-goldens")
    assert kept.returncode == 1 and "goldens NOT written" in kept.stdout
    assert "denied DENY_NO_MATCHING_RULE: " in kept.stdout
    assert (tmp_path / "tests.goldens.json").read_text() == goldens


def test_fixture_files_that_would_check_nothing_are_refused(tmp_path: Path) -> None:
    rules = next((Path(__file__).parents[1] / "rules").glob("*.yaml"))
    cases = {
        "not-a-case": {"tests": [1]},
        "no-expect": {"tests": [{"test_id": "a", "input": {}}]},
        "duplicate-id": {"tests": [{"test_id": "a", "input": {}, "expect": {"denied": True}}] * 2},
        "registry-list": {"tests": [], "registry": [1]},
    }
    for name, doc in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        result = pyhall("validate", str(rules), str(path))
        assert result.returncode == 3, (name, result.stderr)
        assert str(path) in result.stderr and "(fix: " in result.stderr
        no_traceback(result)
    (tmp_path / "ok.json").write_text(json.dumps({"tests": []}))
    (tmp_path / "ok.goldens.json").write_text("{not json")
    corrupt = pyhall("validate", str(rules), str(tmp_path / "ok.json"))
    assert corrupt.returncode == 3 and "--update-goldens" in corrupt.stderr


def test_commands_that_only_look_write_nothing_to_the_state_directory(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert pyhall("init", str(fresh)).returncode == 0

    def state() -> list[Path]:  # SQLite's -shm/-wal index files come with any reader
        files = (fresh / ".pyhall").rglob("*")
        return sorted(p.relative_to(fresh) for p in files if not p.name.endswith(("-shm", "-wal")))

    before = state()
    assert pyhall("status", "--hall", str(fresh)).returncode == 0
    assert pyhall("route", "--capability", "cap.hello.greet", "--hall", str(fresh)).returncode == 0
    check = subprocess.run(
        [sys.executable, "-m", "pyhall_mcp", "--hall", str(fresh), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert state() == before  # no snapshots/ of the attested workers


async def test_a_rules_attestation_precondition_makes_the_hall_attest_in_prod(
    hall: Path, tmp_path: Path
) -> None:
    """With the floor off, a rule that asks for attestation in prod still gets it: the
    hall attests its workers there, so a signed worker runs and an edited one does not."""
    from pyhall_mcp.hall import Hall

    copy = tmp_path / "copy"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    shutil.copytree(hall / ".pyhall" / "keys", copy / ".pyhall" / "keys")
    rules = copy / "rules" / "demo.yaml"
    rules.write_text(
        rules.read_text().replace(
            "      required_controls_suggested: [ctrl.obs.audit-log-append-only]\n\n"
            "  - rule_id: rr.demo.summarize",
            "      required_controls_suggested: [ctrl.obs.audit-log-append-only]\n"
            "      preconditions: {deny_if_no_attestation_in_prod: true}\n\n"
            "  - rule_id: rr.demo.summarize",
            1,
        )
    )
    floors = {"require_worker_attestation": False, "blast_gate_threshold": 100}
    prod = Hall.load(copy, overrides={"env": "prod", "floors": floors})
    assert prod.registry.attestation_of("org.demo.greeter") is not None
    try:
        assert (await prod.call("greet", {"name": "Ada"})).status == "allowed"
        greeter = copy / "workers" / "greeter" / "greeter.py"
        greeter.write_text(greeter.read_text() + "\n# an edit nobody signed\n")
        edited = Hall.load(copy, overrides={"env": "prod", "floors": floors})
        outcome = await edited.call("greet", {"name": "Ada"})
        assert outcome.governance["deny_code"] == "DENY_WORKER_ATTESTATION_MISSING"
        await edited.aclose()
    finally:
        await prod.aclose()


def test_status_json(hall: Path) -> None:
    data = as_json(pyhall("status", "--hall", str(hall), "--json"))
    workers = {w["tool"]: w for w in data["workers"]}
    assert set(workers) == {
        "greet",
        "summarize_document",
        "hash_document",
        "read_file",
        "delete_file",
    }
    assert all(w["attestation"] == "verified" for w in workers.values())
    assert data["policy_version"].startswith("sha256:")
    assert "receipts" in data["audit"]
    assert (data["audit"]["enabled"], data["audit"]["durability"]) == (True, "fsync")
    assert all(w["available"] for w in workers.values())


def test_status_does_not_call_a_tampered_worker_available(hall: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    code = copy / "workers" / "greeter" / "greeter.py"
    code.write_text(code.read_text() + "\n# tampered\n")
    data = as_json(pyhall("status", "--hall", str(copy), "--json"))
    greeter = next(w for w in data["workers"] if w["tool"] == "greet")
    assert greeter["attestation"].startswith("FAILED") and greeter["available"] is False


def test_conformance_full_then_lowered_with_reason(hall: Path) -> None:
    full = pyhall("conformance", "--hall", str(hall), "--json")
    assert as_json(full)["level"] == "WCP-Full", full.stdout
    lowered = as_json(
        pyhall(
            "conformance",
            "--hall",
            str(hall),
            "--json",
            env={"PYHALL_REQUIRE_WORKER_ATTESTATION": "false"},
        )
    )
    assert lowered["level"] == "WCP-Standard"
    failed = {c["name"]: c["why"] for c in lowered["checks"] if not c["passed"]}
    assert failed == {"worker attestation": "floor require_worker_attestation is off"}
    no_signatory = as_json(
        pyhall(
            "conformance", "--hall", str(hall), "--json", env={"PYHALL_REQUIRE_SIGNATORY": "false"}
        )
    )
    assert no_signatory["level"] == "WCP-Standard"
    assert any(c["name"] == "signatory tenants" and not c["passed"] for c in no_signatory["checks"])


def test_scaffold_then_enroll(hall: Path, tmp_path: Path) -> None:
    made = pyhall(
        "scaffold", "shouter", "--capability", "cap.text.shout", "--out", str(tmp_path), "--json"
    )
    assert made.returncode == 0
    assert "worker.yaml" in as_json(made)["files"]
    source = tmp_path / "shouter"
    enrolled = pyhall("enroll", str(source), "--hall", str(hall), "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    assert (hall / "workers" / "shouter" / "worker.yaml").exists()
    again = pyhall("enroll", str(source), "--hall", str(hall))
    assert again.returncode == 1 and "--replace" in again.stderr
    assert pyhall("enroll", str(source), "--hall", str(hall), "--replace").returncode == 0
    bad = pyhall("scaffold", "Bad Name", "--capability", "cap.a.b")
    assert bad.returncode == 2


def test_a_scaffolded_worker_can_be_signed_by_the_halls_own_key(hall: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(hall, copy)
    # A vendor's key the hall also trusts (sorting first) is not the hall's own key.
    trusted = copy / "keys" / "trusted.yaml"
    ring = Keyring.load(trusted)
    ring.add(SigningKey.generate().trusted(["attestation"], namespaces=["org.acme"]))
    ring.save(trusted)
    made = pyhall("scaffold", "weather", "--capability", "cap.weather.get", "--hall", str(copy))
    assert made.returncode == 0, made.stderr
    record = yaml.safe_load((copy / "workers" / "weather" / "worker.yaml").read_text())
    assert record["worker_id"] == "org.demo.weather"  # the namespace init's key may sign
    key = copy / ".pyhall" / "keys" / "attestation.key"
    signed = pyhall("attest", "sign", str(copy / "workers" / "weather"), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    checked = as_json(pyhall("validate", "--hall", str(copy), "--json"))
    about = [p for p in checked["problems"] if "weather" in (p["file"] or "")]
    assert about == [], about  # (other tests enroll unsigned workers into this hall)
    # Without a hall named, scaffold would write into the package's own demo hall.
    bundled = pyhall("scaffold", "weather", "--capability", "cap.weather.get")
    assert bundled.returncode == 2 and "--hall DIR" in bundled.stderr


def test_a_held_call_tells_the_operator_a_command_that_finds_it(hall: Path, tmp_path: Path) -> None:
    copy, state = tmp_path / "copy", tmp_path / "state"
    shutil.copytree(hall, copy, ignore=shutil.ignore_patterns(".pyhall"))
    held = pyhall(
        "call", "delete_file", "--args", '{"path": "scratch/old-draft.txt"}', "--hall", str(copy),
        env={"PYHALL_STATE_DIR": str(state)},
    )  # fmt: skip
    assert held.returncode == 1 and held.stdout.startswith("HELD DENY_REQUIRES_HUMAN")
    routed = pyhall(
        "route", "--capability", "cap.fs.delete", "--request", '{"path": "scratch/x.txt"}',
        "--hall", str(copy), env={"PYHALL_STATE_DIR": str(state)},
    )  # fmt: skip
    assert routed.stdout.startswith("HELD ") and "no approval is created" in routed.stdout
    line = next(x for x in held.stderr.splitlines() if "held for approval" in x)
    command = line.split("decide with `", 1)[1].rstrip("`")
    assert f"--hall {copy}" in command and f"--state-dir {state}" in command
    approve = command.replace("show|approve|deny", "approve").split()[1:]
    decided = subprocess.run(
        [*PYHALL, *approve], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert decided.returncode == 0, decided.stderr
    nowhere = pyhall("approvals", "show", approve[2], "--hall", str(copy))
    assert nowhere.returncode == 1 and str(copy / ".pyhall" / "approvals.db") in nowhere.stderr


def test_scaffold_refuses_a_namespace_that_makes_a_bad_worker_id(hall: Path) -> None:
    args = ("scaffold", "pinger", "--capability", "cap.net.ping", "--hall", str(hall))
    result = pyhall(*args, "--namespace", "bad ns")
    assert result.returncode == 2 and "worker id bad ns.pinger" in result.stderr
    assert not (hall / "workers" / "pinger").exists()


def test_enroll_refuses_symlinks_and_invalid_records(hall: Path, tmp_path: Path) -> None:
    pyhall("scaffold", "linker", "--capability", "cap.text.link", "--out", str(tmp_path))
    (tmp_path / "linker" / "escape").symlink_to("/etc")
    result = pyhall("enroll", str(tmp_path / "linker"), "--hall", str(hall))
    assert result.returncode == 1 and "symlink" in result.stderr
    record = tmp_path / "bad.yaml"
    record.write_text("worker_id: org.x.bad\nworker_species_id: wrk.x.bad\ncapabilities: []\n")
    invalid = pyhall("enroll", str(record), "--hall", str(hall), "--json")
    assert invalid.returncode == 3
    assert as_json(invalid)["details"]["location"] == "capabilities"


def test_enroll_errors_name_the_users_file_not_the_staging_copy(hall: Path, tmp_path: Path) -> None:
    record = (hall / "workers" / "greeter" / "worker.yaml").read_text()
    clash = tmp_path / "pinger.yaml"  # a second worker claiming the tool name greet
    clash.write_text(record.replace("org.demo.greeter", "org.demo.pinger"))
    result = pyhall("enroll", str(clash), "--hall", str(hall))
    assert result.returncode == 3
    assert f"error: {clash}: tool.name:" in result.stderr and ".enroll-" not in result.stderr
    assert not (hall / "workers" / "pinger").exists()


def test_search_and_explain(hall: Path) -> None:
    found = as_json(pyhall("search", "delete", "--json"))
    assert any(e["id"] == "cap.fs.delete" for e in found["results"])
    assert pyhall("search", "zzzz-nothing").returncode == 1
    explained = as_json(pyhall("explain", "cap.fs.read", "--hall", str(hall), "--json"))
    assert explained["enrolled_workers"] == [
        {"worker_id": "org.demo.file-reader", "tool": "read_file"}
    ]
    legacy = as_json(pyhall("explain", "ctrl.blast_radius_scoring", "--json"))
    assert legacy["entry"]["id"] == "ctrl.blast-radius-scoring"
    assert pyhall("explain", "cap.nope.nope").returncode == 1


def test_config_entries(hall: Path) -> None:
    data = as_json(pyhall("config", "cursor", "--hall", str(hall), "--json"))
    entry = data["mcpServers"]["pyhall"]
    assert str(hall) in entry["args"]


def test_completion_bash() -> None:
    script = pyhall("completion", "bash").stdout
    assert "complete -F _pyhall pyhall" in script and " route " in script


def test_call_through_a_real_gateway(hall: Path) -> None:
    ok = pyhall("call", "greet", "--args", '{"name": "Ada"}', "--hall", str(hall), "--json")
    assert ok.returncode == 0, ok.stderr
    assert as_json(ok)["structuredContent"] == {"greeting": "Hello, Ada!"}
    unknown = pyhall("call", "nope", "--hall", str(hall), "--json")
    assert unknown.returncode == 1
    assert as_json(unknown)["jsonrpc_error"]["code"] == -32602
    bad_args = pyhall("call", "greet", "--args", "[1]", "--hall", str(hall))
    assert bad_args.returncode == 2
    dry = pyhall("call", "greet", "--args", '{"name": "Ada"}', "--hall", str(hall), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("DRY RUN: "), dry.stdout
    dry_denied = pyhall(
        "call", "read_file", "--args", '{"path": "../hall.yaml"}', "--hall", str(hall), "--dry-run"
    )
    assert dry_denied.returncode == 1
    assert "DENY_PRIVILEGE_ENVELOPE_VIOLATED" in dry_denied.stdout, dry_denied.stdout


def test_call_and_demo_on_a_hall_the_gateway_refuses(hall: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    assert pyhall("init", str(broken), "--from", str(hall)).returncode == 0
    hall_yaml = broken / "hall.yaml"
    hall_yaml.write_text(hall_yaml.read_text().replace("env: dev", "env: production"))
    for command in (["call", "greet", "--args", '{"name": "Ada"}'], ["demo"]):
        result = pyhall(*command, "--hall", str(broken), "--json")
        assert result.returncode == 3, result.stderr
        no_traceback(result)
        error = as_json(result)
        assert error["details"]["file"] == str(hall_yaml)  # the user's file, not a copy
        assert error["details"]["location"] == "env"
    flag = pyhall("call", "greet", "--hall", str(hall), "--floor", "garbage")
    assert flag.returncode == 3 and "--floor 'garbage'" in flag.stderr
    no_traceback(flag)


def test_unusable_hall_and_state_paths_are_configuration_errors(hall: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    cases = [
        (["status", "--hall", ""], {}, "--hall: is set but empty"),
        (["status"], {"PYHALL_HALL": ""}, "PYHALL_HALL: is set but empty"),
        (["status", "--hall", str(hall)], {"PYHALL_STATE_DIR": str(a_file)}, "PYHALL_STATE_DIR"),
        (
            ["approvals", "list", "--hall", str(hall), "--state-dir", str(a_file)],
            {},
            "--state-dir",
        ),
        (["init", str(a_file)], {}, str(a_file)),
    ]
    for argv, env, named in cases:
        result = pyhall(*argv, env=env)
        assert result.returncode == 3, (argv, result.stderr)
        assert named in result.stderr, (argv, result.stderr)
        no_traceback(result)


def test_unexpected_failures_are_reported_without_a_traceback(hall: Path) -> None:
    closed = subprocess.run(  # stdout closed: the command cannot even print
        [*PYHALL, "status", "--hall", str(hall)],
        capture_output=False,
        stdout=None,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        close_fds=True,
        preexec_fn=lambda: os.close(1),
        env={k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")},
        timeout=60,
    )
    assert closed.returncode == 4
    assert closed.stderr.splitlines()[-1].startswith("pyhall: error: internal error")
    assert "Traceback" not in closed.stderr


def test_the_demo_keeps_its_receipts_out_of_the_operators_state(hall: Path, tmp_path: Path) -> None:
    state = tmp_path / "operators-state"
    result = pyhall("demo", "--hall", str(hall), env={"PYHALL_STATE_DIR": str(state)})
    assert result.returncode == 0, result.stderr
    assert not (state / "audit.db").exists()


def test_demo_shows_every_outcome(hall: Path) -> None:
    result = pyhall("demo", "--hall", str(hall), "--json", timeout=120)
    data = as_json(result)
    assert result.returncode == 0, json.dumps(data["steps"], indent=1)
    outcomes = [s["outcome"] for s in data["steps"]]
    assert {"allowed", "denied", "held"} <= set(outcomes)
    assert data["steps"][-1]["title"] == "audit verify" and data["steps"][-1]["as_expected"]
    # the tampered greeter is put back: the stranger is refused for the tenant alone
    assert "org.demo.greeter failed attestation" not in result.stderr


def test_status_lists_pending_approvals(tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    assert pyhall("init", str(hall)).returncode == 0
    held = pyhall(
        "call",
        "delete_file",
        "--args",
        '{"path": "notes/meeting.txt"}',
        "--hall",
        str(hall),
        "--json",
    )
    assert held.returncode == 1
    approval = as_json(held)["structuredContent"]["pending_approval_id"]
    pending = as_json(pyhall("status", "--hall", str(hall), "--json"))["pending_approvals"]
    assert [(p["approval_id"], p["status"], p["tool"]) for p in pending] == [
        (approval, "pending", "delete_file")
    ]
