"""Property tests of the YAML engine: deny is monotone, and indexing changes nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhall_mcp.policy import CONTEXT_DEFAULTS, YamlPolicyEngine

BASE = "/hall"
WORKERS = ["org.demo.file-reader", "org.demo.file-deleter", "org.demo.greeter"]
TOOLS = ["read_file", "delete_file", "greet"]
PATHS = ["workspace/a.txt", "workspace/../hall.yaml", "/etc/passwd", "workspace", "docs/x.md"]
PERMISSIVENESS = {"DENY": 0, "REQUIRE_HUMAN": 1, "ALLOW": 2}

# Each condition comes with an independent oracle: (spec, value -> bool).
CONTEXT_CONDITIONS: dict[str, list[tuple[Any, Any]]] = {
    "env": [
        ("prod", lambda v: v == "prod"),
        ({"in": ["dev", "stage"]}, lambda v: v in ("dev", "stage")),
        ({"not_in": ["edge"]}, lambda v: v != "edge"),
    ],
    "data_label": [
        ("RESTRICTED", lambda v: v == "RESTRICTED"),
        ({"in": ["PUBLIC", "INTERNAL"]}, lambda v: v in ("PUBLIC", "INTERNAL")),
    ],
    "tenant_id": [
        ("acme", lambda v: v == "acme"),
        ({"prefix": "team-"}, lambda v: v.startswith("team-")),
    ],
    "worker_id": [(w, lambda v, w=w: v == w) for w in WORKERS]
    + [({"in": WORKERS[:2]}, lambda v: v in WORKERS[:2])],
    "tool": [(t, lambda v, t=t: v == t) for t in TOOLS],
    "capability_id": [
        ("cap.a", lambda v: v == "cap.a"),
        ({"in": ["cap.a", "cap.b"]}, lambda v: v in ("cap.a", "cap.b")),
        ({"glob": "cap.*"}, lambda v: v is not None and v.startswith("cap.")),
    ],
    "blast_score": [
        ({"ge": 50}, lambda v: v is not None and v >= 50),
        ({"lt": 30}, lambda v: v is not None and v < 30),
        ({"present": False}, lambda v: v is None),
    ],
}


def _under(value: str) -> bool:
    path = os.path.normpath(os.path.join(BASE, value))
    root = os.path.join(BASE, "workspace")
    return path == root or path.startswith(root + "/")


PATH_CONDITIONS: list[tuple[Any, Any]] = [
    ({"under": "workspace"}, lambda v: v is not None and _under(v)),
    ({"not": {"under": "workspace"}}, lambda v: v is not None and not _under(v)),
    ({"present": False}, lambda v: v is None),
    ({"glob": "*.md"}, lambda v: v is not None and v.endswith(".md")),
]


@st.composite
def statements(draw: st.DrawFn, effect: Any = None) -> tuple[dict[str, Any], Any]:
    """A statement and an oracle ``(context, arguments) -> matches``."""
    keys = draw(st.lists(st.sampled_from(sorted(CONTEXT_CONDITIONS)), unique=True, max_size=3))
    chosen = {k: draw(st.sampled_from(CONTEXT_CONDITIONS[k])) for k in keys}
    arguments: dict[str, Any] = {}
    path_check = None
    if draw(st.booleans()):
        # Argument conditions must target a worker.
        if "worker_id" not in chosen:
            chosen["worker_id"] = CONTEXT_CONDITIONS["worker_id"][0]
        spec, path_check = draw(st.sampled_from(PATH_CONDITIONS))
        arguments["path"] = spec
    statement = {
        "id": "s" + str(draw(st.integers(0, 10**9))),
        "effect": effect or draw(st.sampled_from(["allow", "deny", "require_human"])),
        "description": "generated",
        "when": {k: spec for k, (spec, _) in chosen.items()},
    }
    if arguments:
        statement["arguments"] = arguments

    def oracle(context: dict[str, Any], args: dict[str, Any]) -> bool:
        if not all(check(context[k]) for k, (_, check) in chosen.items()):
            return False
        return path_check is None or path_check(args.get("path"))

    return statement, oracle


contexts = st.fixed_dictionaries(
    {
        "env": st.sampled_from(["dev", "stage", "prod", "edge"]),
        "data_label": st.sampled_from(["PUBLIC", "INTERNAL", "RESTRICTED"]),
        "tenant_id": st.sampled_from(["acme", "team-a", "globex"]),
        "worker_id": st.sampled_from([*WORKERS, "org.other.worker"]),
        "tool": st.sampled_from([*TOOLS, None]),
        "capability_id": st.sampled_from(["cap.a", "cap.b", "cap.c", None]),
        "blast_score": st.one_of(st.none(), st.integers(0, 100)),
        "request": st.one_of(st.just({}), st.builds(lambda p: {"path": p}, st.sampled_from(PATHS))),
    }
).map(lambda c: {**CONTEXT_DEFAULTS, **c})


def _unique(stmts: list[tuple[dict[str, Any], Any]]) -> list[tuple[dict[str, Any], Any]]:
    for i, (statement, _) in enumerate(stmts):
        statement["id"] = f"s{i}"
    return stmts


def _engine(stmts: list[dict[str, Any]]) -> YamlPolicyEngine:
    return YamlPolicyEngine.from_statements(stmts, base_dir=Path(BASE))


def _verdict(engine: YamlPolicyEngine, context: dict[str, Any]) -> str:
    try:
        return engine.evaluate(context)[0]
    except Exception:  # the router's view: an engine error is a denial
        return "DENY"


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    stmts=st.lists(statements(), max_size=8),
    extra=statements(effect="deny"),
    ctxs=st.lists(contexts, min_size=1, max_size=5),
)
def test_adding_a_deny_never_makes_anything_more_permissive(
    stmts: list[Any], extra: Any, ctxs: list[dict[str, Any]]
) -> None:
    stmts = _unique([*stmts, extra])
    before = _engine([s for s, _ in stmts[:-1]])
    after = _engine([s for s, _ in stmts])
    for context in ctxs:
        old, new = _verdict(before, context), _verdict(after, context)
        assert PERMISSIVENESS[new] <= PERMISSIVENESS[old], (old, new, context)
        if old == "DENY":
            assert new == "DENY"


@SETTINGS
@given(stmts=st.lists(statements(), max_size=10), ctxs=st.lists(contexts, min_size=1, max_size=5))
def test_engine_agrees_with_a_brute_force_oracle(
    stmts: list[Any], ctxs: list[dict[str, Any]]
) -> None:
    stmts = _unique(stmts)
    engine = _engine([s for s, _ in stmts])
    for context in ctxs:
        matched = {s["effect"] for s, oracle in stmts if oracle(context, context["request"])}
        expected = (
            "DENY"
            if "deny" in matched or not matched
            else "REQUIRE_HUMAN"
            if "require_human" in matched
            else "ALLOW"
        )
        assert engine.evaluate(context)[0] == expected, (matched, context)
