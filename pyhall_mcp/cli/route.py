"""``pyhall route``: ask the hall for a decision, execute nothing."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from ._common import (
    EXIT_NO,
    EXIT_USAGE,
    CommandFailed,
    add_hall_arg,
    add_json_arg,
    emit,
    load_hall,
    number_in,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "route",
        help="print the hall's decision for a capability request (exit 1 on denial)",
        description="Build a RouteInput (defaults from hall.yaml), run it through the hall's "
        "rules, registry and policy gate, and print the decision. Nothing is executed.",
    )
    parser.add_argument("--capability", required=True, metavar="CAP")
    parser.add_argument("--env", choices=["dev", "stage", "prod", "edge"])
    parser.add_argument("--data-label", choices=["PUBLIC", "INTERNAL", "RESTRICTED"])
    parser.add_argument("--tenant-risk", choices=["low", "medium", "high"])
    parser.add_argument("--qos-class", choices=["P0", "P1", "P2", "P3"])
    parser.add_argument("--tenant-id", metavar="ID")
    parser.add_argument("--correlation-id", metavar="ID")
    parser.add_argument("--request", default="{}", metavar="JSON", help="the request payload")
    parser.add_argument(
        "--blast-score", type=number_in(0, 100), metavar="N", help="raise the blast score"
    )
    parser.add_argument("--dry-run", action="store_true")
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..models import RouteInput

    try:
        request = json.loads(args.request)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"--request is not JSON: {exc.msg}", EXIT_USAGE) from None
    if not isinstance(request, dict):
        raise CommandFailed("--request must be a JSON object", EXIT_USAGE)
    hall = load_hall(args, inspect_only=True)
    settings = hall.settings
    try:
        inp = RouteInput(
            capability_id=args.capability,
            env=args.env or settings.env,
            data_label=args.data_label or settings.data_label,
            tenant_risk=args.tenant_risk or settings.tenant_risk,
            qos_class=args.qos_class or settings.qos_class,
            tenant_id=args.tenant_id or settings.tenant_id,
            correlation_id=args.correlation_id or str(uuid.uuid4()),
            request=request,
            blast_score=args.blast_score,
            dry_run=args.dry_run,
            tenant_credential=settings.tenant_credential,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CommandFailed(
            f"{'.'.join(map(str, first['loc']))}: {first['msg']}", EXIT_USAGE
        ) from None
    decision = hall.decide(inp)
    data = decision.model_dump(mode="json")
    if data.get("pending_approval_id"):
        data["approval_created"] = False  # route only decides; a served call is what waits
    emit(args, data, _describe(data))
    return EXIT_NO if decision.denied else 0


def _describe(d: dict[str, Any]) -> str:
    reason = d["deny_reason_if_denied"] or {}
    verdict = "HELD" if reason.get("supervisor_required") else "DENIED"
    head = (
        f"{verdict} {reason.get('code')}: {reason.get('message')}"
        if d["denied"]
        else f"ALLOWED -> {d['selected_worker_id'] or d['selected_worker_species_id']}"
    )
    lines = [
        head,
        f"  capability      {d['capability_id']}  ({d['env']}, {d['data_label']}, "
        f"tenant {d['tenant_id']}, risk {d['tenant_risk']}, {d['qos_class']})",
        f"  matched rule    {d['matched_rule_id']}",
        f"  controls        {', '.join(d['required_controls_effective']) or '-'}",
        f"  blast score     {d['blast_score'] if d['blast_score'] is not None else '-'}",
        f"  policy version  {d['policy_version'] or '-'}",
        f"  decision id     {d['decision_id']}",
    ]
    for c in d["candidate_workers_ranked"]:
        lines.append(
            f"  candidate       {c['worker_species_id']}"
            + (f" ({c['worker_id']})" if c.get("worker_id") else "")
            + (f" skipped: {c['skip_reason']}" if c.get("skip_reason") else "")
        )
    if d.get("pending_approval_id"):
        lines.append(
            f"  would be held   for {d['supervisor_level']} approval (route only decides: no "
            "approval is created; a call through the gateway, e.g. `pyhall call`, makes one)"
        )
    return "\n".join(lines)
