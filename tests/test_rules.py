"""Routing rules: strict validation with messages naming file and rule, load-time shadow
detection, and an index that answers exactly like a first-match linear scan."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhall_mcp.errors import RuleError
from pyhall_mcp.models import RouteInput
from pyhall_mcp.router import make_decision
from pyhall_mcp.rules import (
    MATCH_FIELDS,
    Rule,
    RuleSet,
    canonical_control,
    detect_shadow_rules,
    load_rule_set,
    load_rules,
    load_rules_from_dict,
    route_first_match,
)

GOOD = {
    "rule_id": "good",
    "match": {"capability_id": "cap.doc.summarize", "env": "dev"},
    "decision": {"candidate_workers_ranked": [{"worker_species_id": "wrk.doc.summarizer"}]},
}


def _bad(match: Any = None, decision: Any = None, rule_id: str = "bad") -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "match": {"capability_id": "cap.doc.other"} if match is None else match,
        "decision": {} if decision is None else decision,
    }


# (kind, second rule of the file, words in the message)
BAD_RULES = [
    ("unknown match key", _bad({"capability_id": "cap.a.b", "colour": "red"}), "colour"),
    ("unknown operator", _bad({"env": {"eq": "dev"}}), "unknown or combined operator"),
    ("combined operators", _bad({"env": {"in": ["dev"], "any": True}}), "combined operator"),
    ("enum typo", _bad({"env": "prd"}), "'prd' is not one of dev, stage, prod, edge"),
    ("label typo in list", _bad({"data_label": {"in": ["PUBLIC", "SECRET"]}}), "'SECRET'"),
    ("non-string value", _bad({"env": 5}), "expected a non-empty string, got 5"),
    ("non-string in list", _bad({"qos_class": {"in": ["P1", 2]}}), "expected a non-empty string"),
    ("empty string", _bad({"capability_id": ""}), "expected a non-empty string"),
    ("empty in", _bad({"env": {"in": []}}), "'in' needs a non-empty list"),
    ("in not a list", _bad({"env": {"in": "dev"}}), "'in' needs a non-empty list"),
    ("any false", _bad({"env": {"any": False}}), "'any' must be true"),
    ("match not a mapping", _bad(["env", "dev"]), "match must be a mapping"),
    ("duplicate rule_id", _bad(rule_id="good"), "duplicate rule_id (first at rules[0])"),
    ("unknown decision key", _bad(decision={"candidates": []}), "decision.candidates"),
    (
        "bad escalation type",
        _bad(decision={"escalation": {"policy_gate": "yes"}}),
        "decision.escalation.policy_gate",
    ),
    ("escalation not a mapping", _bad(decision={"escalation": True}), "decision.escalation"),
    (
        "unknown escalation key",
        _bad(decision={"escalation": {"human_required": True}}),
        "decision.escalation.human_required",
    ),
    (
        "bad precondition type",
        _bad(decision={"preconditions": {"must_have_correlation_id": "no"}}),
        "decision.preconditions.must_have_correlation_id",
    ),
    ("max_blast_score too high", _bad(decision={"max_blast_score": 150}), "max_blast_score"),
    ("max_blast_score negative", _bad(decision={"max_blast_score": -1}), "max_blast_score"),
    ("max_blast_score bool", _bad(decision={"max_blast_score": True}), "max_blast_score"),
    (
        "control without ctrl. prefix",
        _bad(decision={"required_controls_suggested": ["audit-log"]}),
        "control ids start with 'ctrl.'",
    ),
    (
        "candidate without species",
        _bad(decision={"candidate_workers_ranked": [{"score_hint": 1}]}),
        "decision.candidate_workers_ranked.0.worker_species_id",
    ),
    ("decision not a mapping", _bad(decision=["x"]), "decision must be a mapping"),
    ("unknown rule key", {**_bad(), "priority": 1}, "unknown rule key(s): priority"),
    ("rule_id missing", {"match": {}, "decision": {}}, "rule_id is missing"),
    ("rule_id not a string", {"rule_id": 7, "match": {}, "decision": {}}, "rule_id must be"),
]


@pytest.mark.parametrize(("kind", "rule", "words"), BAD_RULES, ids=[b[0] for b in BAD_RULES])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_each_bad_rule_kind_names_file_and_rule(
    tmp_path: Path, kind: str, rule: dict[str, Any], words: str, suffix: str
) -> None:
    path = tmp_path / f"rules{suffix}"
    doc = {"rules": [GOOD, rule]}
    path.write_text(json.dumps(doc) if suffix == ".json" else yaml.safe_dump(doc))
    with pytest.raises(RuleError) as info:
        load_rules(path)
    err = info.value
    assert words in err.message, err.message
    assert err.file == str(path)
    assert err.location is not None and err.location.startswith("rules[1]")
    if isinstance(rule.get("rule_id"), str):
        assert f"rule_id: {rule['rule_id']}" in err.location
    assert err.fix
    # The one-line form an operator sees carries all of it.
    assert str(path) in str(err) and "rules[1]" in str(err)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"rules": [GOOD], "priority": 1}, "unknown top-level key(s): priority"),
        ({"rules": [GOOD, "oops"]}, "a rule must be a mapping"),
        ({"rules": {"r": GOOD}}, "expected a mapping with a `rules` list"),
        ({"rule": [GOOD]}, "expected a mapping with a `rules` list"),
        ([GOOD], "expected a mapping with a `rules` list"),
    ],
)
def test_bad_documents_name_the_file(tmp_path: Path, doc: Any, words: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert words in info.value.message
    assert info.value.file == str(path)


def test_rule_not_a_mapping_names_its_position(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - rule_id: a\n    match: {}\n  - just a string\n")
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert info.value.location == "rules[1]"


def test_yaml_problems_in_rule_files_are_rule_loading_errors(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - &r {rule_id: a}\n  - *r\n")
    with pytest.raises(Exception, match="anchors are not allowed") as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_yaml_no_stays_a_string_and_is_caught_as_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - rule_id: r\n    match: {qos_class: NO}\n")
    with pytest.raises(RuleError, match="'NO' is not one of P0, P1, P2, P3"):
        load_rules(path)


# -- good files ------------------------------------------------------------------------


def test_json_and_yaml_files_load_to_the_same_rule_set(tmp_path: Path) -> None:
    doc = {
        "version": "1",
        "description": "demo",
        "rules": [
            GOOD,
            {
                "rule_id": "prod",
                "description": "prod rule",
                "match": {"capability_id": {"in": ["cap.a.b", "cap.c.d"]}, "env": {"any": True}},
                "decision": {
                    "required_controls_suggested": ["ctrl.obs.audit_log_append_only"],
                    "escalation": {"policy_gate": True, "supervisor_level": "executor"},
                    "max_blast_score": 40,
                },
            },
        ],
    }
    (tmp_path / "r.json").write_text(json.dumps(doc))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    a, b = load_rules(tmp_path / "r.json"), load_rules(tmp_path / "r.yaml")
    assert [r.rule_id for r in a] == [r.rule_id for r in b] == ["good", "prod"]
    assert a.decision_of(1) == b.decision_of(1)
    decision = a.decision_of(1)
    assert decision.max_blast_score == 40
    assert decision.escalation.policy_gate is True
    assert decision.required_controls == {"ctrl.obs.audit-log-append-only"}
    assert a.source == str(tmp_path / "r.json")


def test_rule_set_is_a_read_only_sequence_of_rules() -> None:
    rs = load_rules_from_dict({"rules": [GOOD, _bad()]})
    assert len(rs) == 2
    assert rs[0].rule_id == "good" and rs[-1].rule_id == "bad"
    assert [r.rule_id for r in rs] == ["good", "bad"]
    assert [r.rule_id for r in rs[0:1]] == ["good"]
    assert isinstance(rs[0], Rule)
    assert "2 rules" in repr(rs)


def test_load_rule_set_keeps_file_order_and_checks_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"rules": [GOOD]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"rules": [_bad()]}))
    rs = load_rule_set([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert [r.rule_id for r in rs] == ["good", "bad"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"rules": [_bad(rule_id="good")]}))
    with pytest.raises(RuleError, match="duplicate rule_id"):
        load_rule_set([tmp_path / "a.yaml", tmp_path / "c.yaml"])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot read file") as info:
        load_rules(tmp_path / "none.yaml")
    assert str(tmp_path / "none.yaml") in str(info.value)


def test_legacy_control_ids_are_canonicalised() -> None:
    assert canonical_control("ctrl.blast_radius_scoring") == "ctrl.blast-radius-scoring"
    assert canonical_control("ctrl.obs.audit-log-append-only") == "ctrl.obs.audit-log-append-only"


# -- first match ----------------------------------------------------------------------------


def _inp(**over: Any) -> dict[str, Any]:
    base = dict(
        capability_id="cap.doc.summarize",
        env="dev",
        data_label="PUBLIC",
        tenant_risk="low",
        qos_class="P2",
        tenant_id="acme",
        correlation_id="c-1",
    )
    return base | over


def test_first_match_wins_and_no_match_is_none() -> None:
    rules = [
        Rule("restricted", {"capability_id": "cap.doc.summarize", "data_label": "RESTRICTED"}),
        Rule("dev", {"capability_id": "cap.doc.summarize", "env": {"in": ["dev", "stage"]}}),
        Rule("any-env", {"capability_id": "cap.doc.summarize", "env": {"any": True}}),
        Rule("tenant", {"tenant_id": "globex"}),
    ]
    assert route_first_match(rules, _inp())
    assert route_first_match(rules, _inp()).rule_id == "dev"
    assert route_first_match(rules, _inp(data_label="RESTRICTED")).rule_id == "restricted"
    assert route_first_match(rules, _inp(env="prod")).rule_id == "any-env"
    assert route_first_match(rules, _inp(capability_id="cap.x.y", tenant_id="globex")).rule_id == (
        "tenant"
    )
    assert route_first_match(rules, _inp(capability_id="cap.x.y")) is None
    assert route_first_match([], _inp()) is None


def test_non_string_input_values_only_match_wildcards() -> None:
    rs = RuleSet([Rule("cap", {"capability_id": "5"}), Rule("wild", {"env": {"any": True}})])
    assert rs.first_match(_inp(capability_id=5)).rule_id == "wild"
    assert rs.first_match(_inp(capability_id=None)).rule_id == "wild"
    assert rs.first_match({}).rule_id == "wild"


# -- shadowing ----------------------------------------------------------------------------

_ALL_ENVS = ["dev", "stage", "prod", "edge"]

SHADOWED = [
    (
        "identical",
        {"capability_id": "cap.a.b", "env": "dev"},
        {"capability_id": "cap.a.b", "env": "dev"},
    ),
    (
        "absent key is a wildcard",
        {"capability_id": "cap.a.b"},
        {"capability_id": "cap.a.b", "env": "prod"},
    ),
    ("any is a wildcard", {"capability_id": {"any": True}}, {"capability_id": "cap.a.b"}),
    ("empty match shadows all", {}, {"capability_id": "cap.a.b", "tenant_id": "acme"}),
    ("in superset of value", {"env": {"in": ["dev", "prod"]}}, {"env": "prod"}),
    (
        "in superset of in",
        {"env": {"in": ["dev", "stage", "prod"]}},
        {"env": {"in": ["prod", "dev"]}},
    ),
    ("closed enum in-all is a wildcard", {"env": {"in": _ALL_ENVS}}, {"tenant_risk": "high"}),
    (
        "in-all covers any",
        {"data_label": {"in": ["PUBLIC", "INTERNAL", "RESTRICTED"]}},
        {"data_label": {"any": True}},
    ),
    (
        "wildcard covers in-all",
        {"capability_id": "cap.a.b"},
        {"capability_id": "cap.a.b", "qos_class": {"in": ["P0", "P1", "P2", "P3"]}},
    ),
    ("tenant in superset", {"tenant_id": {"in": ["a", "b"]}}, {"tenant_id": "a", "env": "dev"}),
]

NOT_SHADOWED = [
    ("narrower first", {"capability_id": "cap.a.b", "env": "dev"}, {"capability_id": "cap.a.b"}),
    ("different values", {"env": "dev"}, {"env": "prod"}),
    ("in subset", {"env": {"in": ["dev"]}}, {"env": {"in": ["dev", "prod"]}}),
    (
        "open field in-list is no wildcard",
        {"capability_id": {"in": ["cap.a.b", "cap.c.d"]}},
        {"env": "dev"},
    ),
    ("three of four envs", {"env": {"in": ["dev", "stage", "prod"]}}, {"tenant_risk": "low"}),
    ("disjoint fields", {"env": "dev"}, {"data_label": "PUBLIC"}),
]


@pytest.mark.parametrize(("name", "early", "late"), SHADOWED, ids=[s[0] for s in SHADOWED])
def test_shadowed_rules_are_found(name: str, early: dict, late: dict) -> None:
    rs = RuleSet([Rule("early", early), Rule("late", late)])
    assert rs.shadowed_rule_ids == ["late"]
    (warning,) = rs.shadowed
    assert warning["shadower"] == "early" and warning["shadowed"] == "late"
    assert "'late' is never reached" in warning["reason"]
    assert detect_shadow_rules([Rule("early", early), Rule("late", late)]) == list(rs.shadowed)


@pytest.mark.parametrize(("name", "early", "late"), NOT_SHADOWED, ids=[s[0] for s in NOT_SHADOWED])
def test_rules_that_are_reachable_are_not_reported(name: str, early: dict, late: dict) -> None:
    assert RuleSet([Rule("early", early), Rule("late", late)]).shadowed == ()


def test_first_shadower_is_named_once_per_shadowed_rule() -> None:
    rs = RuleSet(
        [
            Rule("a", {"env": "dev", "capability_id": "cap.x.y"}),
            Rule("b", {"env": {"in": ["dev", "prod"]}}),
            Rule("c", {"env": "dev", "capability_id": "cap.x.y", "qos_class": "P1"}),
            Rule("d", {"env": "prod"}),
        ]
    )
    assert [(w["shadower"], w["shadowed"]) for w in rs.shadowed] == [("a", "c"), ("b", "d")]


def test_shadow_detection_runs_once_at_load_not_per_decision(monkeypatch) -> None:
    calls = 0
    original = RuleSet._find_shadowed

    def counting(self: RuleSet):
        nonlocal calls
        calls += 1
        return original(self)

    monkeypatch.setattr(RuleSet, "_find_shadowed", counting)
    rules = [
        Rule("a", {"capability_id": "cap.doc.summarize"}, {}),
        Rule("b", {"capability_id": "cap.doc.summarize", "env": "prod"}, {}),
    ]
    rs = RuleSet(rules)
    assert calls == 1
    for _ in range(50):
        decision = make_decision(RouteInput(**_inp(env="prod")), rs)
        assert decision.deny_code == "DENY_SHADOW_RULES_DETECTED"
        assert decision.deny_reason_if_denied["shadowed_rule_ids"] == ["b"]
    assert calls == 1
    # A plain list (the reference's calling convention) is compiled once and cached.
    for _ in range(50):
        make_decision(RouteInput(**_inp(env="edge")), rules)
    assert calls == 2


# -- the index equals a linear scan ----------------------------------------------------------

_VALUES: dict[str, list[str]] = {
    "capability_id": ["cap.a.a", "cap.a.b"],
    "env": ["dev", "stage", "prod", "edge"],
    "data_label": ["PUBLIC", "INTERNAL", "RESTRICTED"],
    "tenant_risk": ["low", "medium", "high"],
    "qos_class": ["P0", "P1", "P2", "P3"],
    "tenant_id": ["acme"],
}


def _condition(key: str) -> st.SearchStrategy[Any]:
    values = _VALUES[key]
    return st.one_of(
        st.sampled_from(values),
        st.lists(st.sampled_from(values), min_size=1, max_size=len(values)).map(
            lambda v: {"in": v}
        ),
        st.just({"any": True}),
    )


_MATCH = st.fixed_dictionaries({}, optional={key: _condition(key) for key in MATCH_FIELDS})
# Closed fields only take their enum values (RouteInput validates them); open
# fields may carry a value no rule names.
_INPUT = st.fixed_dictionaries(
    {
        key: st.sampled_from(
            [*values, "other"] if key in ("capability_id", "tenant_id") else values
        )
        for key, values in _VALUES.items()
    }
)


def _naive_first_match(rules: list[Rule], inp: dict[str, Any]) -> Rule | None:
    """The specification, literally: top to bottom, every condition must hold."""
    for rule in rules:
        for key, cond in rule.match.items():
            value = inp.get(key)
            if isinstance(cond, dict) and cond.get("any") is True:
                continue
            if isinstance(cond, dict) and value in cond["in"]:
                continue
            if cond == value:
                continue
            break
        else:
            return rule
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MATCH, max_size=25), st.lists(_INPUT, min_size=1, max_size=8))
def test_index_gives_the_same_first_match_as_a_linear_scan(
    matches: list[dict[str, Any]], inputs: list[dict[str, Any]]
) -> None:
    rules = [Rule(f"r{i}", m) for i, m in enumerate(matches)]
    rs = RuleSet(rules)
    for inp in inputs:
        assert rs.first_match(inp) is _naive_first_match(rules, inp)


def _rule_matches(rule: Rule, inp: dict[str, Any]) -> bool:
    return _naive_first_match([rule], inp) is rule


# Every input a rule can tell apart: the closed enums, plus two open values and one
# that no rule names.
_EVERY_INPUT = [
    dict(zip(MATCH_FIELDS, combo, strict=True))
    for combo in itertools.product(
        ["cap.a.a", "cap.a.b", "other"],
        _VALUES["env"],
        _VALUES["data_label"],
        _VALUES["tenant_risk"],
        _VALUES["qos_class"],
        ["acme", "other"],
    )
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MATCH, min_size=2, max_size=6))
def test_shadowing_equals_brute_force_coverage(
    matches: list[dict[str, Any]],
) -> None:
    rules = [Rule(f"r{i}", m) for i, m in enumerate(matches)]
    # Which inputs each rule matches, by brute force.
    covers = [
        frozenset(n for n, inp in enumerate(_EVERY_INPUT) if _rule_matches(rule, inp))
        for rule in rules
    ]
    expected = {
        rules[j].rule_id: next(rules[i].rule_id for i in range(j) if covers[i] >= covers[j])
        for j in range(len(rules))
        if any(covers[i] >= covers[j] for i in range(j))
    }
    found = {w["shadowed"]: w["shadower"] for w in RuleSet(rules).shadowed}
    assert found == expected


def test_ten_thousand_rules_load_in_reasonable_time() -> None:
    doc = {
        "rules": [
            {
                "rule_id": f"r{i:05d}",
                "match": {
                    "capability_id": f"cap.bench.c{i:05d}",
                    "env": {"in": ["dev", "stage", "prod"]},
                    "data_label": "PUBLIC",
                },
                "decision": {
                    "candidate_workers_ranked": [{"worker_species_id": "wrk.bench.w"}],
                    "required_controls_suggested": ["ctrl.obs.audit-log-append-only"],
                },
            }
            for i in range(10_000)
        ]
    }
    start = time.perf_counter()
    rs = load_rules_from_dict(doc)
    elapsed = time.perf_counter() - start
    assert len(rs) == 10_000 and rs.shadowed == ()
    assert rs.first_match(_inp(capability_id="cap.bench.c09999")).rule_id == "r09999"
    assert rs.first_match(_inp(capability_id="cap.bench.c00000", env="edge")) is None
    # Generous: a regression to a quadratic scan would take minutes, not seconds.
    assert elapsed < 15, f"loading 10,000 rules took {elapsed:.1f}s"


def test_errors_in_a_set_of_files_name_the_file_and_its_own_index(tmp_path: Path) -> None:
    rule = {
        "rule_id": "rr.a",
        "match": {"capability_id": "cap.a.b"},
        "decision": {"candidate_workers_ranked": [{"worker_species_id": "wrk.a.b"}]},
    }
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"rules": [rule, {**rule, "rule_id": "rr.b"}]}))
    second.write_text(json.dumps({"rules": [{**rule, "rule_id": "rr.c", "match": {"env": 5}}]}))
    with pytest.raises(RuleError) as bad:
        load_rule_set([first, second])
    assert (bad.value.file, bad.value.location) == (str(second), "rules[0] (rule_id: rr.c)")

    second.write_text(json.dumps({"rules": [{**rule, "rule_id": "rr.b"}]}))
    with pytest.raises(RuleError) as duplicate:
        load_rule_set([first, second])
    assert duplicate.value.file == str(second)
    assert f"first at {first}: rules[1]" in duplicate.value.message


@pytest.mark.parametrize(
    ("escalation", "named"),
    [
        ({"human_required_if": [{"colour": "red"}]}, "human_required_if[0] key(s): colour"),
        ({"human_required_if": [{"env": "production"}]}, "human_required_if[0].env"),
        ({"msavx_step_up": True}, "msavx_step_up: step-up is not supported"),
    ],
)
def test_an_escalation_that_could_not_be_honoured_is_a_load_error(
    escalation: dict[str, Any], named: str
) -> None:
    rule = {
        "rule_id": "rr.a",
        "match": {"capability_id": "cap.a.b"},
        "decision": {
            "candidate_workers_ranked": [{"worker_species_id": "wrk.a.b"}],
            "escalation": escalation,
        },
    }
    with pytest.raises(RuleError) as info:
        load_rules_from_dict({"rules": [rule]})
    assert named in info.value.message and info.value.fix
