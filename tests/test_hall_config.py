"""A hall's configuration fails closed: what an operator may get wrong in hall.yaml, the
key files, policies/, rules/ and workers/ is refused with its file and a fix, or said
aloud; never quietly loosened."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pyhall_mcp.cli.validate import check_hall
from pyhall_mcp.credentials import issue_credential
from pyhall_mcp.errors import ConfigError
from pyhall_mcp.hall import Hall
from pyhall_mcp.signing import Keyring, SigningKey

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def hall(tmp_path: Path) -> Path:
    target = tmp_path / "hall"
    for name in ("hall.yaml", "keys", "policies", "rules", "workers", "workspace"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.mkdir(exist_ok=True)
            shutil.copy(source, target / name)
    return target


def check(hall: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pyhall-mcp --check``: 0 clean, 1 problems, 3 refusing to start."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")} | env
    result = subprocess.run(
        [sys.executable, "-m", "pyhall_mcp.gateway", "--hall", str(hall), "--check", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr
    return result


def refused(hall: Path) -> str:
    result = check(hall)
    assert result.returncode == 3, result.stderr
    assert "refusing to start" in result.stderr
    return result.stderr


def test_the_copied_demo_hall_checks_clean(hall: Path) -> None:
    result = check(hall)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("floors", [False, [], "", None])
def test_floors_that_are_not_a_mapping_are_refused(hall: Path, floors: object) -> None:
    document = yaml.safe_load((hall / "hall.yaml").read_text())
    (hall / "hall.yaml").write_text(yaml.safe_dump(document | {"floors": floors}))
    err = refused(hall)
    assert "hall.yaml: floors: expected a mapping of floor names" in err
    assert "remove the key for the defaults" in err


def test_an_empty_hall_yaml_is_refused(hall: Path) -> None:
    (hall / "hall.yaml").write_text("# truncated by an editor\n")
    assert "hall.yaml is empty" in refused(hall)


def test_a_misspelt_deny_list_is_refused(hall: Path) -> None:
    (hall / "keys" / "deny-list.yaml").write_text(
        "denied_digest:\n  - {digest: " + "ab" * 32 + ", reason: leaked}\n"
    )
    (hall / "hall.yaml").write_text(
        (hall / "hall.yaml").read_text()
        + "\n# the deny list is read when attestation is required\n"
    )
    with pytest.raises(ConfigError, match="unknown field 'denied_digest'"):
        Hall.load(hall, overrides={"floors": {"require_worker_attestation": True}})
    (hall / "keys" / "deny-list.yaml").write_text(
        "denied_digests:\n  - {digest: " + "ab" * 32 + ", reson: leaked}\n"
    )
    with pytest.raises(ConfigError, match="unknown field 'reson'") as caught:
        Hall.load(hall, overrides={"floors": {"require_worker_attestation": True}})
    assert caught.value.location == "denied_digests[0]"


def test_a_key_listed_twice_cannot_undo_its_revocation(hall: Path) -> None:
    path = hall / "keys" / "trusted.yaml"
    document = yaml.safe_load(path.read_text())
    key = document["keys"][0]
    document["keys"] = [copy.deepcopy(key) | {"revoked": True}, key]
    path.write_text(yaml.safe_dump(document))
    err = refused(hall)
    assert "trusted.yaml: keys[1]: key ed25519:" in err and "is listed twice" in err


def test_a_policy_file_that_cannot_be_read_is_refused_not_skipped(hall: Path) -> None:
    (hall / "policies" / "shared.yaml").symlink_to(hall / "not-mounted" / "shared.yaml")
    assert "shared.yaml" in refused(hall)
    (hall / "policies" / "shared.yaml").unlink()
    (hall / "policies" / "shared.yaml").mkdir()
    assert "shared.yaml" in refused(hall)


def test_rule_files_are_found_whatever_the_case_of_their_suffix(hall: Path) -> None:
    (hall / "rules" / "00-extra.YAML").write_text(
        "rules:\n  - {rule_id: typo, match: {capabilty_id: cap.x}}\n"
    )
    assert "00-extra.YAML" in refused(hall)


def test_two_record_files_for_one_worker_serve_neither(hall: Path) -> None:
    shutil.copy(
        hall / "workers" / "greeter" / "worker.yaml", hall / "workers" / "greeter" / "worker.yml"
    )
    result = check(hall)
    assert result.returncode == 1
    assert "more than one record file: none of them is served" in result.stderr
    assert "4 tools" in result.stderr


def test_a_directory_the_gateway_cannot_list_is_a_configuration_error(
    hall: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = hall / "rules"
    listing = Path.iterdir

    def iterdir(self: Path):  # what chmod 000 does, whoever runs the test (root too)
        if self == rules:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(ConfigError) as caught:
        Hall.load(hall)
    assert caught.value.file == str(rules)
    assert "Permission denied" in caught.value.message and "readable" in (caught.value.fix or "")


def test_a_misspelt_setting_variable_is_said_not_dropped(hall: Path) -> None:
    result = check(hall, PYHALL_REQUIRE_SIGNATORIES="true")
    assert result.returncode == 1
    assert "PYHALL_REQUIRE_SIGNATORIES is not a pyhall setting" in result.stderr
    assert "did you mean PYHALL_REQUIRE_SIGNATORY?" in result.stderr


def test_a_revocation_must_be_a_real_boolean(hall: Path) -> None:
    path = hall / "keys" / "trusted.yaml"
    path.write_text(path.read_text().replace("revoked: false", "revoked: 'no'"))
    err = refused(hall)
    assert "trusted.yaml: keys[0].revoked" in err


def test_check_reports_shadowed_rules_and_answers_json(hall: Path) -> None:
    rules = hall / "rules" / "demo.yaml"
    document = yaml.safe_load(rules.read_text())
    decision = copy.deepcopy(document["rules"][0]["decision"])
    catch_all = {"rule_id": "rr.catch-all", "match": {}, "decision": decision}
    rules.write_text(yaml.safe_dump({"rules": [catch_all, *document["rules"]]}))
    result = check(hall, "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is False and len(summary["tools"]) == 5
    assert any("shadowed rule: rule 'rr.catch-all'" in p for p in summary["problems"])

    (hall / "hall.yaml").write_text("")
    refused = check(hall, "--json")
    assert refused.returncode == 3
    assert json.loads(refused.stdout)["refused"]["message"] == "hall.yaml is empty"


@pytest.mark.parametrize("how", ["empty", "dangling link"])
def test_a_deny_list_that_says_nothing_is_refused(hall: Path, how: str) -> None:
    deny_list = hall / "keys" / "deny-list.yaml"
    if how == "empty":
        deny_list.write_text("")
    else:
        deny_list.symlink_to(hall / "not-mounted" / "deny-list.yaml")
    assert "deny-list.yaml" in refused(hall)  # the demo hall requires attestation


def test_a_record_that_does_not_parse_takes_out_only_its_tool(hall: Path) -> None:
    # The demo policies name the hasher with argument conditions.
    record = hall / "workers" / "hasher" / "worker.yaml"
    record.write_text(record.read_text() + "  bad: [unclosed\n")
    result = check(hall)
    assert result.returncode == 1, result.stderr
    assert "4 tools" in result.stderr and "quarantined org.demo.hasher" in result.stderr


def test_check_json_answers_every_refusal(hall: Path) -> None:
    state = hall / ".pyhall"
    state.mkdir()
    (state / "audit.db").write_bytes(b"not a database" * 100)
    result = check(hall, "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["ok"] is False


def test_variables_a_worker_is_given_are_not_called_unknown(hall: Path) -> None:
    record = hall / "workers" / "hasher" / "worker.yaml"
    document = yaml.safe_load(record.read_text())
    assert document["runner"]["kind"] == "subprocess"
    document["runner"]["env_allow"] = ["PYHALL_HASHER_MODE"]
    record.write_text(yaml.safe_dump(document))
    result = check(hall, PYHALL_HASHER_MODE="fast", PYHALL_REQUIRE_WORKER_ATTESTATION="false")
    assert "PYHALL_HASHER_MODE" not in result.stderr, result.stderr


def test_check_and_validate_refuse_what_serving_refuses(hall: Path) -> None:
    result = check(hall, PYHALL_OTEL="bogus")
    assert result.returncode == 3 and "unknown tracing mode 'bogus'" in result.stderr
    state = hall / ".pyhall"
    state.mkdir()
    (state / "audit.db").write_bytes(b"not a database" * 100)
    problems = check_hall(hall)
    [damaged] = [p for p in problems if p.file == str(state / "audit.db")]
    assert damaged.severity == "error" and "restore it from a backup" in (damaged.fix or "")
    assert "move it aside" in refused(hall)


@pytest.mark.parametrize(
    ("credential", "why"),
    [(None, "no tenant credential"), ("stranger", "tenant"), ("expired", "expired")],
)
def test_check_reports_a_tenant_credential_every_call_would_refuse(
    hall: Path, credential: str | None, why: str
) -> None:
    issuer = SigningKey.generate()
    trusted = hall / "keys" / "trusted.yaml"
    ring = Keyring.load(trusted)
    ring.add(issuer.trusted(["credentials"]))
    ring.save(trusted)
    env = {"PYHALL_REQUIRE_CREDENTIAL": "true"}
    if credential == "stranger":
        env["PYHALL_TENANT_CREDENTIAL"] = issue_credential(issuer, "intruder", ttl_seconds=600)
    elif credential == "expired":
        env["PYHALL_TENANT_CREDENTIAL"] = issue_credential(
            issuer, "demo-agent", ttl_seconds=60, now=int(time.time()) - 3600
        )
    result = check(hall, **env)
    assert result.returncode == 1, result.stderr
    assert "the tenant credential is refused" in result.stderr and why in result.stderr
    good = issue_credential(issuer, "demo-agent", ttl_seconds=600)
    ok = check(hall, PYHALL_REQUIRE_CREDENTIAL="true", PYHALL_TENANT_CREDENTIAL=good)
    assert ok.returncode == 0, ok.stderr


def test_validate_reports_a_bad_signing_key_once(hall: Path) -> None:
    key = hall / ".pyhall" / "keys" / "signing.key"
    SigningKey.generate().save(key)
    key.chmod(0o644)
    about = [p for p in check_hall(hall) if p.file == str(key)]
    assert len(about) == 1 and "readable by other users" in about[0].message
