"""pyhall-mcp: the Worker Class Protocol (WCP) as an MCP governance gateway.

The public API. Code written against the reference package ``pyhall-wcp``
0.2.x ports by changing ``from pyhall import ...`` to
``from pyhall_mcp import ...``.

Names load on first use (PEP 562), so ``pyhall-mcp`` starts without importing
what a given run never touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__wcp_version__ = "0.1"

_EXPORTS = {
    # the pipeline
    "make_decision": "router",
    "blast_heuristic": "router",
    # data contracts
    "RouteInput": "models",
    "RouteDecision": "models",
    "HallConfig": "models",
    "Escalation": "models",
    "CandidateWorker": "models",
    "PreconditionsChecked": "models",
    # rules
    "Rule": "rules",
    "RuleSet": "rules",
    "load_rules": "rules",
    "load_rules_from_dict": "rules",
    "load_rule_set": "rules",
    "route_first_match": "rules",
    "detect_shadow_rules": "rules",
    # registry
    "Registry": "registry",
    "WorkerRecord": "registry",
    "ToolSpec": "registry",
    # policy
    "PolicyGate": "policy",
    "PolicyEngine": "policy",
    "YamlPolicyEngine": "policy",
    "load_policy_engine": "policy",
    # conformance
    "default_conformance_spec": "conformance",
    "validate_required_fields": "conformance",
    "validate_required_telemetry": "conformance",
    # hall and gateway
    "Hall": "hall",
    "load_hall": "hall",
    # credentials and signing
    "issue_credential": "credentials",
    "verify_credential": "credentials",
    "SigningKey": "signing",
    "Keyring": "signing",
}

__all__ = [
    "CandidateWorker",
    "Escalation",
    "Hall",
    "HallConfig",
    "Keyring",
    "PolicyEngine",
    "PolicyGate",
    "PreconditionsChecked",
    "Registry",
    "RouteDecision",
    "RouteInput",
    "Rule",
    "RuleSet",
    "SigningKey",
    "ToolSpec",
    "WorkerRecord",
    "YamlPolicyEngine",
    "__version__",
    "__wcp_version__",
    "blast_heuristic",
    "default_conformance_spec",
    "detect_shadow_rules",
    "issue_credential",
    "load_hall",
    "load_policy_engine",
    "load_rule_set",
    "load_rules",
    "load_rules_from_dict",
    "make_decision",
    "route_first_match",
    "validate_required_fields",
    "validate_required_telemetry",
    "verify_credential",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyhall_mcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .conformance import (
        default_conformance_spec,
        validate_required_fields,
        validate_required_telemetry,
    )
    from .credentials import issue_credential, verify_credential
    from .hall import Hall, load_hall
    from .models import (
        CandidateWorker,
        Escalation,
        HallConfig,
        PreconditionsChecked,
        RouteDecision,
        RouteInput,
    )
    from .policy import PolicyEngine, PolicyGate, YamlPolicyEngine, load_policy_engine
    from .registry import Registry, ToolSpec, WorkerRecord
    from .router import blast_heuristic, make_decision
    from .rules import (
        Rule,
        RuleSet,
        detect_shadow_rules,
        load_rule_set,
        load_rules,
        load_rules_from_dict,
        route_first_match,
    )
    from .signing import Keyring, SigningKey
