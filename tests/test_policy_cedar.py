"""The Cedar engine, and Cedar and YAML agreeing on a shared table of cases."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyhall_mcp.errors import PolicyError
from pyhall_mcp.policy import (
    CONTEXT_DEFAULTS,
    PolicyEngine,
    load_policy_engine,
    run_policy_tests,
)

pytest.importorskip("cedarpy")

from pyhall_mcp.policy_cedar import CedarPolicyEngine

REPO = Path(__file__).resolve().parent.parent
CEDAR_DEMO = REPO / "policies" / "cedar_example"
WORKSPACE = REPO / "workspace"

SCHEMA = """
entity Tenant;
entity Worker;
action "call" appliesTo {
  principal: [Tenant],
  resource: [Worker],
  context: {
    env: String,
    data_label: String,
    tenant_risk: String,
    qos_class: String,
    tool?: String,
    blast_score?: Long,
    human_approved: Bool,
    arguments: { path?: String, n?: Long },
    paths: { path?: String },
  }
};
"""


def ctx(**overrides: Any) -> dict[str, Any]:
    return {**CONTEXT_DEFAULTS, "worker_id": "org.demo.w", "tool": "t", **overrides}


def cedar(tmp_path: Path, policies: str, schema: str = SCHEMA) -> CedarPolicyEngine:
    directory = tmp_path / "policies"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "p.cedar").write_text(textwrap.dedent(policies), encoding="utf-8")
    (directory / "schema.cedarschema").write_text(schema, encoding="utf-8")
    engine = load_policy_engine(directory, base_dir=tmp_path)
    assert isinstance(engine, CedarPolicyEngine)
    return engine


def demo_yaml() -> PolicyEngine:
    return load_policy_engine(REPO / "policies", base_dir=REPO, path_base=WORKSPACE)


def demo_cedar() -> PolicyEngine:
    return CedarPolicyEngine.load(CEDAR_DEMO, base_dir=REPO, path_base=WORKSPACE)


# ---------------------------------------------------------------------------
# Shared table: both engines, same answers
# ---------------------------------------------------------------------------

READER = {"worker_id": "org.demo.file-reader", "tool": "read_file", "worker_risk_tier": "medium"}
DELETER = {"worker_id": "org.demo.file-deleter", "tool": "delete_file", "worker_risk_tier": "high"}
SUMMARIZER = {"worker_id": "org.demo.summarizer", "tool": "summarize_document"}
HASHER = {"worker_id": "org.demo.hasher", "tool": "hash_document"}

SHARED_TABLE: list[tuple[str, dict[str, Any], str]] = [
    (
        "greet",
        {"worker_id": "org.demo.greeter", "tool": "greet", "request": {"name": "x"}},
        "ALLOW",
    ),
    ("greet wrong tool", {"worker_id": "org.demo.greeter", "tool": "other"}, "DENY"),
    ("greet no tool", {"worker_id": "org.demo.greeter", "tool": None}, "DENY"),
    ("summarize dev restricted", {**SUMMARIZER, "data_label": "RESTRICTED"}, "ALLOW"),
    ("summarize prod internal", {**SUMMARIZER, "env": "prod", "data_label": "INTERNAL"}, "ALLOW"),
    (
        "summarize prod restricted",
        {**SUMMARIZER, "env": "prod", "data_label": "RESTRICTED"},
        "DENY",
    ),
    (
        "summarize edge restricted",
        {**SUMMARIZER, "env": "edge", "data_label": "RESTRICTED"},
        "DENY",
    ),
    ("hash sha512", {**HASHER, "request": {"text": "a", "algorithm": "sha512"}}, "ALLOW"),
    ("hash md5", {**HASHER, "request": {"text": "a", "algorithm": "md5"}}, "DENY"),
    ("hash no algorithm", {**HASHER, "request": {"text": "a"}}, "ALLOW"),
    # The policy lets the reader read anywhere: its privilege envelope confines it.
    ("read workspace", {**READER, "request": {"path": "a.txt"}}, "ALLOW"),
    ("read escape", {**READER, "request": {"path": "x/../../hall.yaml"}}, "ALLOW"),
    ("read absolute", {**READER, "request": {"path": "/etc/passwd"}}, "ALLOW"),
    ("read no path", {**READER, "request": {}}, "ALLOW"),
    # The deleter's policy confines paths itself (`under: workspace`).
    ("delete workspace", {**DELETER, "request": {"path": "old/a.txt"}}, "REQUIRE_HUMAN"),
    ("delete workspace dir", {**DELETER, "request": {"path": "."}}, "REQUIRE_HUMAN"),
    ("delete dotted", {**DELETER, "request": {"path": "./x/../y"}}, "REQUIRE_HUMAN"),
    ("delete sibling", {**DELETER, "request": {"path": "../workspace2/a"}}, "DENY"),
    ("delete absolute", {**DELETER, "request": {"path": "/etc/passwd"}}, "DENY"),
    (
        "delete absolute inside",
        {**DELETER, "request": {"path": str(WORKSPACE / "a")}},
        "REQUIRE_HUMAN",
    ),
    ("delete absolute hall", {**DELETER, "request": {"path": str(REPO / "hall.yaml")}}, "DENY"),
    ("delete escape", {**DELETER, "request": {"path": "../../x"}}, "DENY"),
    ("delete no path", {**DELETER, "request": {}}, "DENY"),
    (
        "delete high-risk tenant",
        {**DELETER, "tenant_risk": "high", "request": {"path": "a"}},
        "DENY",
    ),
    (
        "read high-risk tenant",
        {**READER, "tenant_risk": "high", "request": {"path": "a"}},
        "ALLOW",
    ),
    ("unknown worker", {"worker_id": "org.x.y", "tool": "greet"}, "DENY"),
    ("no worker", {"worker_id": None, "tool": None}, "DENY"),
]


@pytest.fixture(scope="module")
def engines() -> tuple[PolicyEngine, PolicyEngine]:
    return demo_yaml(), demo_cedar()


@pytest.mark.parametrize(
    ("name", "overrides", "expected"), SHARED_TABLE, ids=[r[0] for r in SHARED_TABLE]
)
def test_cedar_and_yaml_agree(
    engines: tuple[PolicyEngine, PolicyEngine], name: str, overrides: dict[str, Any], expected: str
) -> None:
    yaml_engine, cedar_engine = engines
    context = {**CONTEXT_DEFAULTS, **overrides}
    assert yaml_engine.evaluate(context)[0] == expected
    assert cedar_engine.evaluate(context)[0] == expected


def test_cedar_demo_passes_the_demo_policy_tests(
    engines: tuple[PolicyEngine, PolicyEngine],
) -> None:
    report = run_policy_tests(engines[1], REPO / "policies" / "tests.yaml")
    assert report.failures == []


def test_cedar_version_and_describe() -> None:
    one, two = demo_cedar(), demo_cedar()
    assert one.version == two.version and one.version.startswith("sha256:")
    described = one.describe()
    ids = [s["id"] for s in described]
    assert "pol.demo.delete-human-gate" in ids and len(ids) == len(set(ids))
    assert {s["effect"] for s in described} == {"permit", "forbid"}


# ---------------------------------------------------------------------------
# Cedar specifics
# ---------------------------------------------------------------------------


def test_require_human_via_forbid_unless_approved(tmp_path: Path) -> None:
    engine = cedar(
        tmp_path,
        """
        @id("ok") permit (principal, action, resource);
        @id("gate") forbid (principal, action, resource) when { context.env == "prod" }
            unless { context.human_approved };
        @id("never") forbid (principal, action, resource) when { context.tenant_risk == "high" };
        """,
    )
    assert engine.evaluate(ctx())[0] == "ALLOW"
    verdict, version, reason = engine.evaluate(ctx(env="prod"))
    assert (verdict, version) == ("REQUIRE_HUMAN", engine.version)
    assert "gate" in reason and "ok" in reason
    # A real forbid beats the human gate.
    assert engine.evaluate(ctx(env="prod", tenant_risk="high"))[0] == "DENY"


def test_require_human_via_permit_when_approved(tmp_path: Path) -> None:
    engine = cedar(
        tmp_path,
        '@id("approved") permit (principal, action, resource) when { context.human_approved };',
    )
    assert engine.evaluate(ctx())[0] == "REQUIRE_HUMAN"


def test_default_deny_and_principal_resource(tmp_path: Path) -> None:
    engine = cedar(
        tmp_path,
        """
        permit (
            principal == Tenant::"acme", action == Action::"call", resource == Worker::"org.demo.w"
        );
        """,
    )
    assert engine.evaluate(ctx(tenant_id="acme"))[0] == "ALLOW"
    verdict, _, reason = engine.evaluate(ctx(tenant_id="globex"))
    assert verdict == "DENY" and reason.startswith("default_deny")
    assert engine.evaluate(ctx(tenant_id="acme", worker_id="org.demo.other"))[0] == "DENY"


def test_blast_score_and_arguments(tmp_path: Path) -> None:
    engine = cedar(
        tmp_path,
        """
        permit (principal, action, resource)
        when { context has blast_score && context.blast_score < 50 &&
               context.arguments has n && context.arguments.n <= 3 };
        """,
    )
    assert engine.evaluate(ctx(blast_score=10, request={"n": 3}))[0] == "ALLOW"
    assert engine.evaluate(ctx(blast_score=60, request={"n": 3}))[0] == "DENY"
    assert engine.evaluate(ctx(blast_score=None, request={"n": 3}))[0] == "DENY"
    assert engine.evaluate(ctx(blast_score=10, request={"n": 4}))[0] == "DENY"


@pytest.mark.parametrize(
    "request_args",
    [
        {"n": "three"},  # wrong type in a permit: Cedar errors, we deny
        {"n": 1.5},  # Cedar has no floats
        {"n": {"__entity": {"type": "Tenant", "id": "root"}}},  # reserved key
        {"n": 2**70},
    ],
)
def test_evaluation_errors_raise(tmp_path: Path, request_args: dict[str, Any]) -> None:
    engine = cedar(
        tmp_path,
        "permit (principal, action, resource)"
        " when { context.arguments has n && context.arguments.n <= 3 };",
    )
    with pytest.raises(PolicyError, match="evaluation error"):
        engine.evaluate(ctx(request=request_args))


def test_an_erroring_forbid_is_not_skipped(tmp_path: Path) -> None:
    # Cedar skips a policy that errors; the engine must not let that allow.
    engine = cedar(
        tmp_path,
        """
        permit (principal, action, resource);
        forbid (principal, action, resource)
        when { context.arguments has n && context.arguments.n > 3 };
        """,
    )
    assert engine.evaluate(ctx(request={"n": 1}))[0] == "ALLOW"
    assert engine.evaluate(ctx(request={"n": 5}))[0] == "DENY"
    with pytest.raises(PolicyError):
        engine.evaluate(ctx(request={"n": "5"}))


def test_bad_context_raises(tmp_path: Path) -> None:
    engine = cedar(tmp_path, "permit (principal, action, resource);")
    with pytest.raises(PolicyError):
        engine.evaluate(ctx(request=[1]))
    with pytest.raises(PolicyError):
        engine.evaluate(ctx(tenant_id=None))
    with pytest.raises(PolicyError):
        engine.evaluate(ctx(blast_score="9"))


def test_typo_in_a_forbid_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        cedar(
            tmp_path,
            """
            @id("fine") permit (principal, action, resource);
            @id("typo") forbid (principal, action, resource) when { context.enviroment == "prod" };
            """,
        )
    err = info.value
    assert err.file and err.file.endswith("p.cedar")
    assert err.location == "@id typo"
    assert "enviroment" in err.message


@pytest.mark.parametrize(
    ("policies", "schema", "words"),
    [
        ("permit (principal, action, resource", SCHEMA, "syntax"),
        ("permit (principal, action, resource);", "entity ;", "schema"),
        ("permit (principal == ?principal, action, resource);", SCHEMA, "template"),
        (
            '@id("a") permit (principal, action, resource);\n'
            '@id("a") forbid (principal, action, resource);',
            SCHEMA,
            "duplicate",
        ),
        ('permit (principal, action == Action::"delete", resource);', SCHEMA, "validate"),
    ],
)
def test_load_errors(tmp_path: Path, policies: str, schema: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        cedar(tmp_path, policies, schema)
    assert words in info.value.describe()


def test_schema_is_required(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "p.cedar").write_text("permit (principal, action, resource);")
    with pytest.raises(PolicyError, match="exactly one Cedar schema"):
        load_policy_engine(directory, base_dir=tmp_path)


def test_json_schema_is_accepted(tmp_path: Path) -> None:
    import json

    schema = {
        "": {
            "entityTypes": {"Tenant": {}, "Worker": {}},
            "actions": {
                "call": {
                    "appliesTo": {
                        "principalTypes": ["Tenant"],
                        "resourceTypes": ["Worker"],
                        "context": {
                            "type": "Record",
                            "attributes": {"env": {"type": "String"}},
                        },
                    }
                }
            },
        }
    }
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "p.cedar").write_text(
        'permit (principal, action, resource) when { context.env == "dev" };'
    )
    (directory / "schema.cedarschema.json").write_text(json.dumps(schema))
    engine = load_policy_engine(directory, base_dir=tmp_path)
    assert engine.evaluate(ctx())[0] == "ALLOW"
    assert engine.evaluate(ctx(env="prod"))[0] == "DENY"


def test_version_ignores_formatting_and_file_split(tmp_path: Path) -> None:
    permit = '@id("x") permit (principal, action, resource);'
    forbid = '@id("y") forbid (principal, action, resource) when { context.env == "prod" };'
    a = cedar(tmp_path / "a", f"{permit}\n{forbid}")
    other = tmp_path / "b" / "policies"
    other.mkdir(parents=True)
    (other / "z.cedar").write_text(
        '@id("x")\npermit (\n  principal,\n  action,\n  resource\n); // same\n'
    )
    (other / "a.cedar").write_text(forbid)
    (other / "schema.cedarschema").write_text(SCHEMA)
    b = load_policy_engine(other, base_dir=tmp_path)
    assert a.version == b.version
    assert cedar(tmp_path / "c", permit).version != a.version


def test_missing_cedarpy_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(CEDAR_DEMO, tmp_path / "policies")
    monkeypatch.setitem(sys.modules, "cedarpy", None)
    with pytest.raises(PolicyError) as info:
        load_policy_engine(tmp_path / "policies", base_dir=tmp_path)
    assert "cedarpy" in info.value.message and "pyhall-mcp[cedar]" in (info.value.fix or "")


@pytest.mark.parametrize("how", ["dangling link", "directory", "upper-case suffix"])
def test_a_cedar_file_that_cannot_be_read_is_refused_not_skipped(tmp_path: Path, how: str) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(CEDAR_DEMO, directory)
    baseline = directory / "baseline.cedar"
    if how == "dangling link":
        baseline.unlink()
        baseline.symlink_to(tmp_path / "not-mounted" / "baseline.cedar")
    elif how == "directory":
        baseline.unlink()
        baseline.mkdir()
    else:
        baseline.rename(directory / "baseline.CEDAR")
        (directory / "baseline.CEDAR").write_text("this is not cedar")
    with pytest.raises(PolicyError, match="baseline"):
        CedarPolicyEngine.load(directory, base_dir=tmp_path)
