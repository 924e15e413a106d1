"""``pyhall demo``: a one-minute scripted session against the real gateway.

It copies the demo hall to a temporary directory (so nothing is written into
the package), starts ``pyhall-mcp`` on it as an MCP client would, and shows an
allowed call, a denial, a held call, a stranger refused, a tampered worker
refused, and the receipt chain verifying at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import EXIT_NO, add_hall_arg, add_json_arg, hall_dir

_COPY = ("hall.yaml", "rules", "policies", "workers", "workspace", "keys")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="run a short scripted session against the real gateway",
        description="Copy the hall to a temporary directory and drive pyhall-mcp through an "
        "allowed call, a denial, a held call, a refused tenant, a tampered worker, then "
        "verify the receipts.",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary hall")
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def copy_hall(source: Path, target: Path) -> None:
    for name in _COPY:
        src = source / name
        if src.is_dir():
            shutil.copytree(
                src, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pyhall")
            )
        elif src.is_file():
            shutil.copy2(src, target / name)


def run(args: argparse.Namespace) -> int:
    import anyio

    from ._session import check_launch

    source = hall_dir(args)
    check_launch(source)  # errors name the user's files, not the temporary copy's
    # The copy keeps its own state: the demo's receipts and approvals must not join the
    # log a PYHALL_STATE_DIR names (this process and its gateways read it).
    os.environ.pop("PYHALL_STATE_DIR", None)
    work = Path(tempfile.mkdtemp(prefix="pyhall-demo-"))
    try:
        copy_hall(source, work)
        steps = anyio.run(_session, work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        sys.stdout.write(json.dumps({"hall": str(work), "steps": steps}, indent=2) + "\n")
    return 0 if all(s["as_expected"] for s in steps) else EXIT_NO


class _Narrator:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.steps: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        if not self.quiet:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def step(
        self,
        title: str,
        expect: str,
        outcome: str,
        detail: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        ok = outcome == expect
        mark = {"allowed": "ALLOWED", "denied": "DENIED ", "held": "HELD   "}.get(outcome, outcome)
        self.say(f"  {mark}  {title}\n           {detail}")
        self.steps.append(
            {
                "title": title,
                "expected": expect,
                "outcome": outcome,
                "as_expected": ok,
                "detail": detail,
                **(extra or {}),
            }
        )


def _outcome(result: Any) -> tuple[str, str, dict[str, Any]]:
    summary = result.structured_content or {}
    if not result.is_error:
        return "allowed", json.dumps(summary)[:100], summary
    kind = "held" if summary.get("held") else "denied"
    code = summary.get("deny_code") or "error"
    return kind, f"{code}: {result.content[0].text[:140]}", summary


async def _call(
    narrator: _Narrator, client: Any, title: str, expect: str, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    outcome, detail, summary = _outcome(result)
    gov = (result.meta or {}).get("dev.pyhall/governance", {})
    if gov.get("receipt_id"):
        detail += f"\n           receipt {gov['receipt_id']} (seq {gov.get('receipt_seq')})"
    narrator.step(title, expect, outcome, detail, {"tool": tool, "summary": summary})
    return summary


async def _approve(hall: Path, approval_id: str) -> None:
    """What the operator does in another terminal: the real CLI, as a subprocess."""
    import anyio

    await anyio.run_process(
        [
            sys.executable,
            "-m",
            "pyhall_mcp.cli",
            "approvals",
            "approve",
            approval_id,
            "--hall",
            str(hall),
            "--note",
            "approved in the demo",
        ],
        check=True,
    )


async def _session(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from mcp import MCPError

    from ..audit import verify_log
    from ..layout import HallLayout
    from ._session import gateway_client

    narrator = _Narrator(quiet=args.json)
    narrator.say(
        f"pyhall demo: a governed MCP session on a copy of the demo hall\n  hall: {work}\n"
    )
    async with gateway_client(work, ["--events", "off"]) as client:
        tools = await client.list_tools()
        narrator.say("The gateway serves these enrolled workers as tools:")
        for tool in tools.tools:
            narrator.say(f"  - {tool.name}: {tool.description}")
        narrator.say("\nCalls, each decided by rules + policy and receipted before anything runs:")
        await _call(narrator, client, "greet Ada", "allowed", "greet", {"name": "Ada"})
        await _call(
            narrator,
            client,
            "read a workspace file",
            "allowed",
            "read_file",
            {"path": "README.txt"},
        )
        await _call(
            narrator,
            client,
            "read the hall's own config (outside the workspace)",
            "denied",
            "read_file",
            {"path": "../hall.yaml"},
        )
        (work / "workspace" / "notes" / "shortcut.txt").symlink_to("../../hall.yaml")
        await _call(
            narrator,
            client,
            "read a link in the workspace that leads out of it",
            "denied",
            "read_file",
            {"path": "notes/shortcut.txt"},
        )
        held = await _call(
            narrator,
            client,
            "delete a workspace file (irreversible)",
            "held",
            "delete_file",
            {"path": "scratch/old-draft.txt"},
        )
        approval = held.get("pending_approval_id")
        if approval:
            narrator.say(f"           operator: pyhall approvals approve {approval}")
            await _approve(work, approval)
            await _call(
                narrator,
                client,
                "the identical retry, after the operator approved it (runs once)",
                "allowed",
                "delete_file",
                {"path": "scratch/old-draft.txt"},
            )
        try:
            await client.call_tool("launch_rockets", {})
            narrator.step("call a tool nobody enrolled", "denied", "allowed", "answered?!")
        except MCPError as exc:
            narrator.step(
                "call a tool nobody enrolled",
                "denied",
                "denied",
                f"JSON-RPC {exc.error.code}: {exc.error.message}",
            )
        target = work / "workers" / "greeter" / "greeter.py"
        signed = target.read_text()
        target.write_text(signed + "\n# an edit nobody signed\n")
        await _call(
            narrator,
            client,
            "greet after someone edited the greeter's code",
            "denied",
            "greet",
            {"name": "Ada"},
        )
        target.write_text(signed)  # put back, so that the next refusal is the tenant's alone

    narrator.say("\nA stranger: the same hall launched for a tenant it does not know:")
    async with gateway_client(work, ["--events", "off", "--tenant", "intruder"]) as client:
        await _call(
            narrator, client, "greet as tenant 'intruder'", "denied", "greet", {"name": "Ada"}
        )

    report = verify_log(HallLayout.for_hall(work))
    narrator.say(
        f"\nReceipts: {report.count} signed, hash-chained receipts; "
        f"`pyhall audit verify` says {'OK' if report.ok else 'BROKEN'}."
    )
    narrator.steps.append(
        {
            "title": "audit verify",
            "expected": "ok",
            "outcome": "ok" if report.ok else "broken",
            "as_expected": report.ok,
            "receipts": report.count,
        }
    )
    if not args.json:
        hall = f" --hall {shlex.quote(str(hall_dir(args)))}" if args.hall else ""
        narrator.say(
            f'Try it yourself: pyhall call greet --args \'{{"name": "you"}}\'{hall}\n'
            f"Connect a client: pyhall config claude-desktop{hall}"
        )
    return narrator.steps
