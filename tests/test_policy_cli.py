"""``pyhall policy show|test``."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from pyhall_mcp.cli import main

REPO = Path(__file__).resolve().parent.parent

READER_RECORD = """
worker_id: org.demo.file-reader
worker_species_id: wrk.fs.reader
capabilities: [cap.fs.read]
risk_tier: medium
tool:
  name: read_file
  description: Read a text file under the workspace.
  input_schema:
    type: object
    properties:
      path: {type: string}
    required: [path]
"""


@pytest.fixture
def hall(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        shutil.copy(path, policies / path.name)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_lists_statements_and_version(hall: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "show", "--hall", str(hall))
    assert code == 0
    assert "policy version sha256:" in out
    assert "pol.demo.read-workspace" in out and "require_human" in out and "[gatekeeper]" in out

    code, out, _ = run(capsys, "policy", "show", "--hall", str(hall), "--json")
    data = json.loads(out)
    assert code == 0 and data["engine"] == "YamlPolicyEngine"
    assert data["policy_version"].startswith("sha256:")
    assert {s["id"] for s in data["statements"]} >= {
        "pol.demo.greet",
        "pol.demo.delete-needs-human",
    }


def test_show_without_policies_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "show", "--hall", str(tmp_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["statements"] == [] and data["engine"] == "NoPolicyEngine"
    assert data["warnings"] and "no_policy_configured" in data["warnings"][0]


def test_test_passes_on_the_demo_cases(hall: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = str(hall / "policies" / "tests.yaml")
    code, out, _ = run(capsys, "policy", "test", cases, "--hall", str(hall))
    assert code == 0, out
    assert "0 failed" in out
    code, out, _ = run(capsys, "policy", "test", cases, "--hall", str(hall), "--json")
    assert code == 0 and json.loads(out)["passed"] is True


def test_test_names_each_failure(hall: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = hall / "bad-cases.yaml"
    cases.write_text(
        textwrap.dedent(
            """
            cases:
              - name: deletion is allowed (wrong)
                context:
                  worker_id: org.demo.file-deleter
                  tool: delete_file
                  request: {path: workspace/a}
                expect: allow
              - name: greet is allowed
                context: {worker_id: org.demo.greeter, tool: greet}
                expect: allow
              - name: reason check (wrong)
                context: {worker_id: org.demo.greeter, tool: greet}
                expect: allow
                reason_contains: pol.demo.nothing
            """
        )
    )
    code, out, _ = run(capsys, "policy", "test", str(cases), "--hall", str(hall))
    assert code == 1
    assert "FAIL  deletion is allowed (wrong)" in out
    assert "expected allow, got require_human" in out
    assert "FAIL  reason check (wrong)" in out and "pol.demo.nothing" in out
    assert "PASS  greet is allowed" in out
    assert "1 passed, 2 failed" in out


def test_invalid_policy_is_a_config_error(hall: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (hall / "policies" / "zz.yaml").write_text(
        "policies: [{id: oops, effect: allow, description: d, when: {env: production}}]\n"
    )
    code, out, err = run(capsys, "policy", "show", "--hall", str(hall), "--json")
    assert code == 3
    details = json.loads(out)["details"]
    assert details["file"].endswith("zz.yaml") and "oops" in details["location"]
    assert "Traceback" not in err


def test_arguments_are_checked_against_enrolled_schemas(
    hall: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = hall / "workers" / "file-reader" / "worker.yaml"
    record.parent.mkdir(parents=True)
    record.write_text(READER_RECORD)
    # The demo policies also target workers this hall does not enroll.
    code, _, err = run(capsys, "policy", "show", "--hall", str(hall))
    assert code == 3 and "not an enrolled worker or tool" in err
    for name in ("documents.yaml", "files.yaml"):
        (hall / "policies" / name).unlink()
    (hall / "policies" / "reader.yaml").write_text(
        textwrap.dedent(
            """
            policies:
              - id: pol.reader
                effect: allow
                description: d
                when: {worker_id: org.demo.file-reader}
                arguments: {filename: {under: workspace}}
            """
        )
    )
    code, _, err = run(capsys, "policy", "show", "--hall", str(hall))
    assert code == 3
    assert "reader.yaml" in err and "pol.reader" in err and "filename" in err
