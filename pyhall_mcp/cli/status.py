"""``pyhall status``: what a hall serves and the state of its evidence."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_hall_arg, add_json_arg, add_state_dir_arg, emit, load_hall


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="workers, tools, controls, attestation, policy version, audit head, pending approvals",
    )
    add_state_dir_arg(parser)
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hall = load_hall(args, inspect_only=True)
    data = status(hall)
    emit(args, data, _render(data))
    return 0


def status(hall: Any) -> dict[str, Any]:
    config = hall.config
    served = {item.record.worker_id for item in hall.served.values()}
    workers = []
    for record in hall.registry.records:
        if not config.require_worker_attestation:
            attestation = "not required"
        elif record.worker_id in hall.attestation_failures:
            attestation = f"FAILED {hall.attestation_failures[record.worker_id]}"
        elif hall.registry.attestation_of(record.worker_id) is not None:
            attestation = "verified"
        else:
            attestation = "not served"
        workers.append(
            {
                "worker_id": record.worker_id,
                "species": record.worker_species_id,
                "tool": record.tool.name if record.tool else None,
                "risk_tier": record.risk_tier,
                "capabilities": list(record.capabilities),
                "controls": sorted(record.controls),
                "environments": list(record.allowed_environments),
                # Callable now: served, allowed in this env, and not denied by attestation.
                "available": record.worker_id in served
                and hall.settings.env in record.allowed_environments
                and record.worker_id not in hall.attestation_failures,
                "attestation": attestation,
            }
        )
    return {
        "hall": str(hall.layout.root),
        "name": hall.settings.name,
        "env": hall.settings.env,
        "tenant_id": hall.settings.tenant_id,
        "rules": {"count": len(hall.rules), "shadowed": hall.rules.shadowed_rule_ids},
        "policy_version": hall.policy.version,
        "floors": hall.config.model_dump(exclude={"credential_issuers"}),
        "workers": workers,
        "quarantined": [p.describe() for p in hall.problems],
        "audit": {
            "enabled": hall.settings.audit.enabled,
            "durability": hall.settings.audit.durability,
            **_audit(hall),
        },
        "pending_approvals": _pending(hall),
    }


def _audit(hall: Any) -> dict[str, Any]:
    from ..audit import SQLiteReceiptStore
    from ..errors import AuditError

    path = hall.layout.audit_db
    if not path.exists():
        return {"receipts": 0, "head": None, "path": str(path)}
    try:
        store = SQLiteReceiptStore(path, readonly=True)
        try:
            head = store.head()
            return {
                "receipts": store.count(),
                "path": str(path),
                "head": {"seq": head.seq, "receipt_hash": head.receipt_hash} if head else None,
            }
        finally:
            store.close()
    except AuditError as exc:
        return {"error": str(exc), "path": str(path)}


def _pending(hall: Any) -> list[dict[str, Any]]:
    """Held calls still waiting for (or holding) a person's decision."""
    from ..approvals import ApprovalStore, store_errors_as_config

    if not hall.layout.approvals_db.exists():
        return []
    with store_errors_as_config(hall.layout.approvals_db):
        store = ApprovalStore.open(hall.layout.approvals_db)
    try:
        now = store.now_us()
        return [
            {
                k: a.as_dict(now)[k]
                for k in ("approval_id", "status", "tool", "tenant_id", "expires_at")
            }
            for a in store.list(("pending", "approved"))
        ]
    finally:
        store.close()


def _render(data: dict[str, Any]) -> str:
    lines = [
        f"hall {data['name']} at {data['hall']}",
        f"  env {data['env']}, tenant {data['tenant_id']}, "
        f"{data['rules']['count']} rules, policy {data['policy_version'][:23]}",
    ]
    floors = [k for k, v in data["floors"].items() if v is True]
    lines.append(f"  floors on: {', '.join(floors)}")
    lines.append("workers:")
    for w in data["workers"]:
        lines.append(
            f"  {w['tool'] or '(no tool)':<20} {w['worker_id']:<28} risk {w['risk_tier']:<8}"
            f" {'available' if w['available'] else 'unavailable':<11} "
            f"attestation: {w['attestation']}"
        )
        lines.append(f"  {'':<20} controls: {', '.join(w['controls']) or '-'}")
    for problem in data["quarantined"]:
        lines.append(f"  QUARANTINED {problem}")
    audit = data["audit"]
    head = audit.get("head")
    lines.append(
        f"audit ({'durability ' + audit['durability'] if audit['enabled'] else 'off'}): "
        f"{audit.get('receipts', '?')} receipts"
        + (f", head seq {head['seq']} {head['receipt_hash'][:16]}…" if head else "")
        + (f" ({audit['error']})" if "error" in audit else "")
    )
    pending = data["pending_approvals"]
    lines.append(f"pending approvals: {len(pending)}")
    for item in pending:
        lines.append(
            f"  {item['approval_id']}  {item['status']}  {item['tool']} for "
            f"{item['tenant_id']}, expires {item['expires_at']}"
        )
    return "\n".join(lines)
