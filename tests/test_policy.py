"""The embedded YAML policy engine: operators, combining, loading, errors, tests, the gate."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyhall_mcp.errors import PolicyError
from pyhall_mcp.policy import (
    CONTEXT_DEFAULTS,
    NoPolicyEngine,
    PolicyEngine,
    PolicyGate,
    YamlPolicyEngine,
    load_policy_engine,
    policy_test_files,
    run_policy_tests,
)

REPO = Path(__file__).resolve().parent.parent

SCHEMAS: dict[str, dict[str, Any]] = {
    "org.demo.file-reader": {"type": "object", "properties": {"path": {"type": "string"}}},
    "read_file": {"type": "object", "properties": {"path": {"type": "string"}}},
    "org.demo.summarizer": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "max_sentences": {"type": "integer"}},
    },
    "summarize_document": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "max_sentences": {"type": "integer"}},
    },
}


def ctx(**overrides: Any) -> dict[str, Any]:
    return {
        **CONTEXT_DEFAULTS,
        "worker_id": "org.demo.file-reader",
        "tool": "read_file",
        **overrides,
    }


def engine(tmp_path: Path, *statements: dict[str, Any], schemas: Any = None) -> YamlPolicyEngine:
    return YamlPolicyEngine.from_statements(
        list(statements), base_dir=tmp_path, tool_schemas=schemas
    )


def stmt(sid: str, effect: str = "allow", **parts: Any) -> dict[str, Any]:
    return {"id": sid, "effect": effect, "description": f"statement {sid}", **parts}


def decision(eng: PolicyEngine, **overrides: Any) -> str:
    return eng.evaluate(ctx(**overrides))[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------


def arg_engine(tmp_path: Path, condition: Any) -> YamlPolicyEngine:
    return engine(
        tmp_path,
        stmt("a", when={"worker_id": "org.demo.file-reader"}, arguments={"path": condition}),
    )


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        # equality
        ("a.txt", "a.txt", "ALLOW"),
        ("a.txt", "b.txt", "DENY"),
        ("1", 1, "DENY"),  # no coercion between strings and numbers
        # membership
        ({"in": ["a", "b"]}, "b", "ALLOW"),
        ({"in": ["a", "b"]}, "c", "DENY"),
        ({"not_in": ["a", "b"]}, "c", "ALLOW"),
        ({"not_in": ["a", "b"]}, "a", "DENY"),
        # strings
        ({"prefix": "docs/"}, "docs/x", "ALLOW"),
        ({"prefix": "docs/"}, "src/docs/x", "DENY"),
        ({"glob": "*.txt"}, "dir/a.txt", "ALLOW"),  # * crosses /
        ({"glob": "*.txt"}, "a.TXT", "DENY"),  # case-sensitive
        ({"glob": "report-?.md"}, "report-1.md", "ALLOW"),
        ({"regex": "[a-z]+"}, "abc", "ALLOW"),
        ({"regex": "[a-z]+"}, "abc1", "DENY"),  # the whole value must match
        ({"regex": "^[a-z]+$"}, "abc\n", "DENY"),  # no trailing-newline bypass
        ({"regex": ".*secret.*"}, "a\nsecret", "ALLOW"),  # . crosses newlines
        # paths
        ({"under": "workspace"}, "workspace/a.txt", "ALLOW"),
        ({"under": "workspace"}, "workspace", "ALLOW"),
        ({"under": "workspace"}, "./workspace/./sub/../a.txt", "ALLOW"),
        ({"under": "workspace"}, "workspace/../hall.yaml", "DENY"),
        ({"under": "workspace"}, "workspace/../../etc/passwd", "DENY"),
        ({"under": "workspace"}, "workspace-evil/a.txt", "DENY"),
        ({"under": "workspace"}, "/etc/passwd", "DENY"),
        ({"under": "workspace"}, "", "DENY"),
        # presence
        ({"present": True}, "x", "ALLOW"),
        ({"present": True}, None, "DENY"),
        ({"present": False}, None, "ALLOW"),
        ({"present": False}, "x", "DENY"),
        # not
        ({"not": {"under": "workspace"}}, "/etc/passwd", "ALLOW"),
        ({"not": {"under": "workspace"}}, "workspace/a", "DENY"),
        ({"not": {"under": "workspace"}}, None, "DENY"),  # absent matches only present: false
        ({"not": "a"}, "b", "ALLOW"),
        # several operators must all hold
        ({"prefix": "workspace/", "glob": "*.md"}, "workspace/a.md", "ALLOW"),
        ({"prefix": "workspace/", "glob": "*.md"}, "workspace/a.txt", "DENY"),
        ({"present": True, "in": ["a"]}, "a", "ALLOW"),
    ],
)
def test_argument_operators(tmp_path: Path, condition: Any, value: Any, expected: str) -> None:
    eng = arg_engine(tmp_path, condition)
    request = {} if value is None else {"path": value}
    assert decision(eng, request=request) == expected


def test_absolute_under_and_absolute_argument(tmp_path: Path) -> None:
    root = tmp_path / "data"
    eng = arg_engine(tmp_path, {"under": str(root)})
    assert decision(eng, request={"path": str(root / "x")}) == "ALLOW"
    assert decision(eng, request={"path": "data/x"}) == "ALLOW"  # relative: against the hall
    assert decision(eng, request={"path": str(tmp_path / "other")}) == "DENY"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.txt", "ALLOW"),
        ("notes/../a.txt", "ALLOW"),
        (".", "ALLOW"),
        ("workspace/a.txt", "ALLOW"),  # workspace/workspace/a.txt, as the worker reads it
        ("../hall.yaml", "DENY"),
        ("../workspace-other/a", "DENY"),
        ("a/../../../etc/passwd", "DENY"),
        ("/etc/passwd", "DENY"),
    ],
)
def test_relative_arguments_resolve_against_path_base(
    tmp_path: Path, value: str, expected: str
) -> None:
    eng = YamlPolicyEngine.from_statements(
        [stmt("a", when={"tool": "read_file"}, arguments={"path": {"under": "workspace"}})],
        base_dir=tmp_path,
        path_base="workspace",  # relative: against the hall directory
    )
    assert decision(eng, request={"path": value}) == expected
    absolute = str(tmp_path / "workspace" / "x")
    assert decision(eng, request={"path": absolute}) == "ALLOW"


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ({"lt": 50}, 49, "ALLOW"),
        ({"lt": 50}, 50, "DENY"),
        ({"le": 50}, 50, "ALLOW"),
        ({"gt": 50}, 51, "ALLOW"),
        ({"gt": 50}, 50, "DENY"),
        ({"ge": 50}, 50, "ALLOW"),
        ({"ge": 50}, 49, "DENY"),
        ({"ge": 10, "le": 20}, 15, "ALLOW"),
        ({"ge": 10, "le": 20}, 21, "DENY"),
        (70, 70, "ALLOW"),
        ({"in": [10, 20]}, 20, "ALLOW"),
        ({"lt": 50}, None, "DENY"),  # no blast score: comparisons do not hold
        ({"present": False}, None, "ALLOW"),
    ],
)
def test_numeric_operators_on_blast_score(
    tmp_path: Path, condition: Any, value: Any, expected: str
) -> None:
    eng = engine(tmp_path, stmt("a", when={"blast_score": condition}))
    assert decision(eng, blast_score=value) == expected


def test_numeric_operators_on_arguments(tmp_path: Path) -> None:
    eng = engine(
        tmp_path,
        stmt(
            "a",
            when={"worker_id": "org.demo.summarizer"},
            arguments={"max_sentences": {"ge": 1, "le": 10}},
        ),
        schemas=SCHEMAS,
    )
    base = {"worker_id": "org.demo.summarizer", "tool": "summarize_document"}
    assert decision(eng, **base, request={"max_sentences": 3}) == "ALLOW"
    assert decision(eng, **base, request={"max_sentences": 11}) == "DENY"
    assert decision(eng, **base, request={"max_sentences": 2.5}) == "ALLOW"


@pytest.mark.parametrize(
    "key, condition, good, bad",
    [
        ("tenant_id", "acme", "acme", "globex"),
        ("tenant_id", {"prefix": "team-"}, "team-a", "acme"),
        ("tenant_id", {"regex": "team-[0-9]+"}, "team-42", "team-x"),
        ("env", {"in": ["prod", "edge"]}, "edge", "dev"),
        ("data_label", "RESTRICTED", "RESTRICTED", "PUBLIC"),
        ("tenant_risk", {"not_in": ["high"]}, "low", "high"),
        ("qos_class", "P0", "P0", "P1"),
        ("capability_id", {"glob": "cap.doc.*"}, "cap.doc.summarize", "cap.fs.read"),
        ("worker_species_id", "wrk.fs.reader", "wrk.fs.reader", "wrk.fs.deleter"),
        ("worker_risk_tier", {"in": ["high", "critical"]}, "critical", "medium"),
        ("worker_id", {"in": ["org.demo.file-reader"]}, "org.demo.file-reader", "org.x.y"),
        ("tool", "read_file", "read_file", "delete_file"),
    ],
)
def test_context_conditions(tmp_path: Path, key: str, condition: Any, good: Any, bad: Any) -> None:
    eng = engine(tmp_path, stmt("a", when={key: condition}))
    assert decision(eng, **{key: good}) == "ALLOW"
    assert decision(eng, **{key: bad}) == "DENY"


def test_all_conditions_of_a_statement_must_hold(tmp_path: Path) -> None:
    eng = engine(
        tmp_path,
        stmt(
            "a",
            when={"worker_id": "org.demo.file-reader", "env": "dev", "tenant_id": "acme"},
            arguments={"path": {"under": "workspace"}},
        ),
    )
    good = {"env": "dev", "tenant_id": "acme", "request": {"path": "workspace/a"}}
    assert decision(eng, **good) == "ALLOW"
    assert decision(eng, **{**good, "env": "prod"}) == "DENY"
    assert decision(eng, **{**good, "tenant_id": "globex"}) == "DENY"
    assert decision(eng, **{**good, "worker_id": "org.demo.other"}) == "DENY"
    assert decision(eng, **{**good, "request": {"path": "hall.yaml"}}) == "DENY"


# ---------------------------------------------------------------------------
# Combining and the default deny
# ---------------------------------------------------------------------------


def test_nothing_matching_is_a_deny(tmp_path: Path) -> None:
    eng = engine(tmp_path, stmt("a", when={"tenant_id": "acme"}))
    verdict, version, reason = eng.evaluate(ctx(tenant_id="globex"))
    assert verdict == "DENY"
    assert version == eng.version
    assert reason.startswith("default_deny")


def test_empty_policy_set_denies(tmp_path: Path) -> None:
    assert decision(engine(tmp_path)) == "DENY"


@pytest.mark.parametrize(
    ("effects", "expected"),
    [
        (["allow"], "ALLOW"),
        (["require_human"], "REQUIRE_HUMAN"),
        (["deny"], "DENY"),
        (["allow", "require_human"], "REQUIRE_HUMAN"),
        (["require_human", "allow"], "REQUIRE_HUMAN"),
        (["allow", "deny"], "DENY"),
        (["deny", "allow"], "DENY"),
        (["require_human", "deny"], "DENY"),
        (["allow", "require_human", "deny"], "DENY"),
        (["allow", "allow"], "ALLOW"),
    ],
)
def test_combining_order(tmp_path: Path, effects: list[str], expected: str) -> None:
    statements = [stmt(f"s{i}", effect, when={"env": "dev"}) for i, effect in enumerate(effects)]
    eng = engine(tmp_path, *statements)
    assert decision(eng, env="dev") == expected


def test_reason_names_the_deciding_statement(tmp_path: Path) -> None:
    eng = engine(
        tmp_path,
        stmt("ok", "allow", when={"env": "dev"}),
        stmt("human", "require_human", when={"env": "dev"}, supervisor_level="executor"),
        stmt("no", "deny", when={"tenant_id": "mallory"}),
    )
    result = eng.decide(ctx())
    assert (result.decision, result.statement_id, result.supervisor_level) == (
        "REQUIRE_HUMAN",
        "human",
        "executor",
    )
    assert result.reason == "human: statement human"
    assert eng.decide(ctx(tenant_id="mallory")).statement_id == "no"


def test_indexed_and_unindexed_statements_combine(tmp_path: Path) -> None:
    # The allow is bucketed by worker, the deny by tool and the human gate by
    # capability: deny must still win over the bucketed allow.
    eng = engine(
        tmp_path,
        stmt("allow-worker", "allow", when={"worker_id": "org.demo.file-reader"}),
        stmt("human-cap", "require_human", when={"capability_id": "cap.fs.read"}),
        stmt("deny-tool", "deny", when={"tool": "read_file", "env": "prod"}),
        stmt("deny-any", "deny", when={"tenant_id": "mallory"}),
    )
    assert decision(eng) == "ALLOW"
    assert decision(eng, capability_id="cap.fs.read") == "REQUIRE_HUMAN"
    assert decision(eng, capability_id="cap.fs.read", env="prod") == "DENY"
    assert decision(eng, tenant_id="mallory") == "DENY"
    # Cached candidate lists do not leak between keys.
    assert decision(eng, worker_id="org.other", tool="other") == "DENY"
    assert decision(eng) == "ALLOW"


def test_call_shape_cache_is_bounded_and_transparent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyhall_mcp.policy as policy_module

    monkeypatch.setattr(policy_module, "_CACHE_LIMIT", 3)
    eng = engine(
        tmp_path,
        stmt("team", "allow", when={"tenant_id": {"prefix": "team-"}}),
        stmt("blast", "deny", when={"blast_score": {"ge": 90}}),
    )
    for round_ in range(3):
        for i in range(10):
            tenant = f"team-{i}" if i % 2 else f"other-{i}"
            expected = "ALLOW" if i % 2 else "DENY"
            assert decision(eng, tenant_id=tenant, blast_score=10) == expected, round_
            assert decision(eng, tenant_id=tenant, blast_score=95) == "DENY"
    assert len(eng._cache) <= 3


# ---------------------------------------------------------------------------
# Run-time errors raise (the router denies with DENY_INTERNAL_ERROR)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ({"prefix": "a"}, 5),
        ({"glob": "*"}, ["a"]),
        ({"regex": ".*"}, {"x": 1}),
        ({"under": "workspace"}, 7),
        ({"under": "workspace"}, "workspace/a\x00b"),
        ({"lt": 5}, "3"),
        ({"lt": 5}, True),
        ("a", ["a"]),
        ({"in": ["a"]}, {"a": 1}),
    ],
)
def test_evaluation_errors_raise(tmp_path: Path, condition: Any, value: Any) -> None:
    eng = arg_engine(tmp_path, condition)
    with pytest.raises(PolicyError, match="evaluation error"):
        eng.evaluate(ctx(request={"path": value}))


def test_evaluation_error_in_an_allow_is_not_skipped(tmp_path: Path) -> None:
    # A second allow would match, but the erroring statement must not be
    # silently skipped: the whole evaluation fails (and the router denies).
    eng = engine(
        tmp_path,
        stmt(
            "typed",
            "allow",
            when={"worker_id": "org.demo.file-reader"},
            arguments={"path": {"prefix": "a"}},
        ),
        stmt("any", "allow", when={"env": "dev"}),
    )
    with pytest.raises(PolicyError):
        eng.evaluate(ctx(request={"path": 1}))


def test_bad_context_shapes_raise(tmp_path: Path) -> None:
    eng = engine(tmp_path, stmt("a", when={"env": "dev"}))
    with pytest.raises(PolicyError):
        eng.evaluate(ctx(request=["not", "a", "mapping"]))
    with pytest.raises(PolicyError):
        eng.evaluate("not a mapping")  # type: ignore[arg-type]
    with pytest.raises(PolicyError):
        eng.evaluate(ctx(worker_id=["unhashable"]))
    with pytest.raises(PolicyError):
        eng.evaluate(ctx(tenant_id=7))
    blast = engine(tmp_path, stmt("b", "deny", when={"blast_score": {"ge": 90}}))
    with pytest.raises(PolicyError):
        blast.evaluate(ctx(blast_score="high"))


def test_router_turns_gate_results_and_errors_into_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyhall_mcp.router import make_decision
    from pyhall_mcp.rules import load_rules_from_dict

    rules = load_rules_from_dict(
        {
            "rules": [
                {
                    "rule_id": "r1",
                    "match": {"capability_id": "cap.fs.read"},
                    "decision": {
                        "candidate_workers_ranked": [{"worker_species_id": "wrk.fs.reader"}],
                        "escalation": {"policy_gate": True},
                    },
                }
            ]
        }
    )
    eng = engine(
        tmp_path,
        stmt("read", "allow", when={"capability_id": "cap.fs.read"}),
        stmt("abs", "deny", when={"tool": "read_file"}, arguments={"path": {"prefix": "/"}}),
    )
    base = {
        "capability_id": "cap.fs.read",
        "env": "dev",
        "data_label": "PUBLIC",
        "tenant_risk": "low",
        "qos_class": "P2",
        "tenant_id": "t",
        "correlation_id": "c-1",
    }

    def route(path: Any) -> Any:
        return make_decision(
            {**base, "request": {"path": path}},
            rules,
            set(),
            lambda species: True,
            policy_gate_eval=PolicyGate(eng),
            tool="read_file",
        )

    allowed = route("workspace/a")
    assert not allowed.denied and allowed.policy_version == eng.version
    assert route("/etc/passwd").deny_code == "DENY_POLICY_GATE"
    # A run-time evaluation error is a denial with DENY_INTERNAL_ERROR (spec section 10),
    # logged as the engine described it: one line, no traceback.
    capsys.readouterr()
    assert route(5).deny_code == "DENY_INTERNAL_ERROR"
    logged = capsys.readouterr().err
    assert logged.startswith("pyhall: policy gate: ") and "arguments.path" in logged
    assert "Traceback" not in logged


# ---------------------------------------------------------------------------
# Load errors
# ---------------------------------------------------------------------------


def load_error(tmp_path: Path, body: str, schemas: Any = SCHEMAS) -> PolicyError:
    path = write(tmp_path / "policies" / "bad.yaml", body)
    with pytest.raises(PolicyError) as info:
        YamlPolicyEngine.load(path.parent, base_dir=tmp_path, tool_schemas=schemas)
    err = info.value
    assert err.file == str(path)
    assert err.fix
    return err


def test_unknown_field_is_a_load_error(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: ok
            effect: allow
            description: fine
          - id: typo
            effect: deny
            description: a typo'd field must not widen the statement
            whenn: {env: prod}
        """,
    )
    assert err.location is not None and "policies[1]" in err.location
    assert "whenn" in err.message


def test_unknown_context_key_and_operator(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - {id: x, effect: deny, description: d, when: {environment: prod}}
        """,
    )
    assert "(id: x)" in err.location and "environment" in err.message
    err = load_error(
        tmp_path,
        """
        policies:
          - {id: y, effect: deny, description: d, when: {env: {one_of: [prod]}}}
        """,
    )
    assert "(id: y)" in err.location and "one_of" in err.message


def test_argument_not_in_targeted_schema(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: pol.read
            effect: allow
            description: d
            when: {worker_id: org.demo.file-reader}
            arguments: {filename: {under: workspace}}
        """,
    )
    assert "pol.read" in err.location and "filename" in err.message
    assert "path" in err.fix


def test_argument_checked_against_every_target(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: two
            effect: allow
            description: d
            when: {worker_id: {in: [org.demo.file-reader, org.demo.summarizer]}}
            arguments: {path: {present: true}}
        """,
    )
    assert "org.demo.summarizer" in err.message


def test_arguments_without_a_target(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: untargeted
            effect: deny
            description: d
            when: {env: prod}
            arguments: {path: {present: true}}
        """,
    )
    assert "untargeted" in err.location and "target" in err.message
    err = load_error(
        tmp_path,
        """
        policies:
          - id: vague
            effect: deny
            description: d
            when: {worker_id: {prefix: org.demo.}}
            arguments: {path: {present: true}}
        """,
    )
    assert "vague" in err.location and "exactly" in err.message


def test_arguments_target_must_be_enrolled(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: ghost
            effect: allow
            description: d
            when: {tool: read_fiel}
            arguments: {path: {present: true}}
        """,
    )
    assert "read_fiel" in err.message


def test_arguments_without_schemas_still_need_a_target(tmp_path: Path) -> None:
    load_error(
        tmp_path,
        """
        policies:
          - {id: a, effect: deny, description: d, arguments: {path: {present: true}}}
        """,
        schemas=None,
    )


def test_malformed_regex_and_glob(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - id: rx
            effect: deny
            description: d
            when: {worker_id: org.demo.file-reader}
            arguments: {path: {regex: "([a-z"}}
        """,
    )
    assert "rx" in err.location and "regex" in err.message


def test_bad_effect(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        policies:
          - {id: eff, effect: permit, description: d}
        """,
    )
    assert "(id: eff)" in err.location or "policies[0]" in err.location
    assert "effect" in err.location


@pytest.mark.parametrize(
    "statement, words",
    [
        ("{id: a, effect: deny, description: d, when: {env: production}}", "production"),
        ("{id: a, effect: deny, description: d, when: {data_label: SECRET}}", "SECRET"),
        ("{id: a, effect: deny, description: d, when: {env: [prod]}}", "list"),
        ("{id: a, effect: deny, description: d, when: {env: null}}", "null"),
        ("{id: a, effect: deny, description: d, when: {env: {}}}", "empty"),
        ("{id: a, effect: deny, description: d, when: {env: {prefix: p}}}", "prefix"),
        ("{id: a, effect: deny, description: d, when: {blast_score: {prefix: '9'}}}", "prefix"),
        ("{id: a, effect: deny, description: d, when: {blast_score: {gt: high}}}", "number"),
        ("{id: a, effect: deny, description: d, when: {blast_score: '90'}}", "number"),
        ("{id: a, effect: deny, description: d, when: {tenant_id: {under: x}}}", "under"),
        ("{id: a, effect: deny, description: d, when: {env: {in: []}}}", "non-empty"),
        ("{id: a, effect: deny, description: d, when: {env: {present: maybe}}}", "present"),
        (
            "{id: a, effect: deny, description: d, when: {tool: {present: false, in: [x]}}}",
            "present",
        ),
        ("{id: a, effect: deny, description: d, when: {tool: {not: {present: true}}}}", "present"),
        (
            "{id: a, effect: allow, description: d, supervisor_level: gatekeeper}",
            "supervisor_level",
        ),
        ("{id: a, effect: allow, description: ''}", "description"),
        ("{id: 'has space', effect: allow, description: d}", "id"),
        ("{effect: allow, description: d}", "id"),
        ("just a string", "mapping"),
    ],
)
def test_other_load_errors(tmp_path: Path, statement: str, words: str) -> None:
    err = load_error(tmp_path, f"policies:\n  - {statement}\n")
    assert words in err.describe()


def test_file_level_errors(tmp_path: Path) -> None:
    assert "mapping" in load_error(tmp_path, "- a list\n").message
    assert "rules" in load_error(tmp_path, "policies: []\nrules: []\n").message
    load_error(tmp_path, "default: allow\npolicies: []\n")
    load_error(tmp_path, "policies: {}\n")
    # Strict YAML: duplicate keys are refused, not last-wins.
    load_error(tmp_path, "policies: []\npolicies: []\n")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path / "policies" / "a.yaml", "policies: [{id: same, effect: allow, description: d}]")
    write(tmp_path / "policies" / "b.yaml", "policies: [{id: same, effect: deny, description: d}]")
    with pytest.raises(PolicyError, match="duplicate statement id"):
        YamlPolicyEngine.load(tmp_path / "policies", base_dir=tmp_path)


def test_unknown_target_without_arguments_is_a_warning(tmp_path: Path) -> None:
    eng = engine(tmp_path, stmt("a", when={"worker_id": "org.nobody"}), schemas=SCHEMAS)
    assert any("org.nobody" in w for w in eng.warnings)


# ---------------------------------------------------------------------------
# Version
# ---------------------------------------------------------------------------


def test_version_is_stable_and_order_independent(tmp_path: Path) -> None:
    a = stmt("a", when={"env": "dev"})
    b = stmt("b", "deny", when={"env": "prod"})
    one = engine(tmp_path, a, b)
    two = engine(tmp_path / "elsewhere", b, a)
    assert one.version == two.version
    assert one.version.startswith("sha256:") and len(one.version) == 71
    changed = engine(tmp_path, a, {**b, "when": {"env": "edge"}})
    assert changed.version != one.version


def test_version_ignores_file_names_and_split(tmp_path: Path) -> None:
    write(
        tmp_path / "one" / "all.yaml",
        "policies: [{id: a, effect: allow, description: d}, {id: b, effect: deny, description: e}]",
    )
    write(tmp_path / "two" / "z.yaml", "policies: [{id: a, effect: allow, description: d}]")
    write(tmp_path / "two" / "a.yaml", "policies: [{id: b, effect: deny, description: e}]")
    one = YamlPolicyEngine.load(tmp_path / "one", base_dir=tmp_path)
    two = YamlPolicyEngine.load(tmp_path / "two", base_dir=tmp_path)
    assert one.version == two.version


def test_describe_lists_statements_with_their_file(tmp_path: Path) -> None:
    path = write(tmp_path / "p" / "x.yaml", "policies: [{id: a, effect: allow, description: d}]")
    eng = YamlPolicyEngine.load(path.parent, base_dir=tmp_path)
    assert eng.describe() == [{"file": str(path), "id": "a", "effect": "allow", "description": "d"}]


# ---------------------------------------------------------------------------
# Choosing an engine for a hall; the gate
# ---------------------------------------------------------------------------


def test_no_policy_files_denies_everything(tmp_path: Path) -> None:
    for directory in (tmp_path / "missing", (tmp_path / "empty")):
        if directory.name == "empty":
            directory.mkdir()
        eng = load_policy_engine(directory, base_dir=tmp_path)
        assert isinstance(eng, NoPolicyEngine)
        verdict, version, reason = eng.evaluate(ctx())
        assert verdict == "DENY" and version == eng.version and "no_policy_configured" in reason
        assert eng.describe() == []


def test_mixed_yaml_and_cedar_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "policies" / "a.yaml", "policies: []")
    write(tmp_path / "policies" / "a.cedar", "permit(principal, action, resource);")
    with pytest.raises(PolicyError, match="mixes"):
        load_policy_engine(tmp_path / "policies", base_dir=tmp_path)


def test_test_files_are_not_policies(tmp_path: Path) -> None:
    write(tmp_path / "policies" / "a.yml", "policies: [{id: a, effect: allow, description: d}]")
    write(tmp_path / "policies" / "tests.yaml", "cases: []")
    write(tmp_path / "policies" / "more.tests.yaml", "cases: []")
    eng = load_policy_engine(tmp_path / "policies", base_dir=tmp_path)
    assert [s["id"] for s in eng.describe()] == ["a"]
    assert [p.name for p in policy_test_files(tmp_path / "policies")] == [
        "more.tests.yaml",
        "tests.yaml",
    ]


def test_policy_gate_without_engine_denies() -> None:
    verdict, _, reason = PolicyGate().evaluate({"env": "dev"})
    assert verdict == "DENY" and reason == "no_policy_configured"


def test_policy_gate_delegates_and_can_be_subclassed(tmp_path: Path) -> None:
    eng = engine(tmp_path, stmt("a", when={"env": "dev"}))
    gate = PolicyGate(eng)
    assert gate.evaluate(ctx()) == eng.evaluate(ctx())
    assert gate.version == eng.version
    assert isinstance(eng, PolicyEngine)

    class Mine(PolicyGate):
        def evaluate(self, context: Any) -> tuple[str, str, str]:
            return ("REQUIRE_HUMAN", "v1", "mine")

    assert Mine().evaluate({}) == ("REQUIRE_HUMAN", "v1", "mine")
    assert Mine()({}) == ("REQUIRE_HUMAN", "v1", "mine")


# ---------------------------------------------------------------------------
# Policy tests and the demo hall's policies
# ---------------------------------------------------------------------------


def demo_engine() -> PolicyEngine:
    schemas = {
        name: {"type": "object", "properties": {key: {"type": "string"} for key in props}}
        for names, props in [
            (("org.demo.greeter", "greet"), ("name",)),
            (("org.demo.summarizer", "summarize_document"), ("text", "max_sentences")),
            (("org.demo.hasher", "hash_document"), ("text", "algorithm")),
            (("org.demo.file-reader", "read_file"), ("path",)),
            (("org.demo.file-deleter", "delete_file"), ("path",)),
        ]
        for name in names
    }
    return load_policy_engine(
        REPO / "policies", base_dir=REPO, tool_schemas=schemas, path_base=REPO / "workspace"
    )


def test_demo_policies_pass_their_tests() -> None:
    report = run_policy_tests(demo_engine(), REPO / "policies" / "tests.yaml")
    assert report.failures == []
    assert len(report.results) >= 15
    outcomes = {r.actual for r in report.results}
    assert outcomes == {"allow", "deny", "require_human"}


def test_policy_test_failures_are_reported(tmp_path: Path) -> None:
    eng = engine(tmp_path, stmt("a", when={"env": "dev"}))
    cases = write(
        tmp_path / "cases.yaml",
        """
        cases:
          - {name: dev allowed, context: {env: dev}, expect: allow}
          - {name: prod allowed, context: {env: prod}, expect: allow}
          - {name: wrong reason, context: {env: dev}, expect: allow, reason_contains: nope}
          - name: error is a deny
            context: {env: dev, request: [1]}
            expect: deny
        """,
    )
    report = run_policy_tests(eng, cases)
    assert [r.name for r in report.failures] == ["prod allowed", "wrong reason"]
    assert report.results[3].passed and "evaluation_error" in report.results[3].reason
    assert report.as_dict()["failed"] == 2


@pytest.mark.parametrize(
    "body, words",
    [
        ("cases: [{name: a, context: {environment: dev}, expect: allow}]", "environment"),
        ("cases: [{name: a, expect: maybe}]", "expect"),
        ("cases: [{name: a, expect: allow}, {name: a, expect: deny}]", "duplicate"),
        ("tests: []", "cases"),
    ],
)
def test_policy_test_file_errors(tmp_path: Path, body: str, words: str) -> None:
    path = write(tmp_path / "cases.yaml", body)
    with pytest.raises(PolicyError) as info:
        run_policy_tests(engine(tmp_path), path)
    assert words in info.value.describe()
