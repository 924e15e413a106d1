"""Re-record the golden traces in this directory.

    .venv/bin/python traces/make_suite.py            # every scenario, both eras, then replay each
    .venv/bin/python traces/make_suite.py denials    # only the scenarios named
    .venv/bin/python traces/make_suite.py --list

Each scenario is a session of the MCP SDK's own ``Client`` with
``pyhall traces record OUT -- python -m pyhall_mcp --hall COPY ...``: the
relay any MCP client can launch. The hall is a temporary copy and the state
directory a temporary one, so recording never touches the repository's hall.
The relay writes the trace; this script then names the hall in the header
(``demo`` or ``halls/...``) and adds the steps a session made to its hall.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from mcp import MCPError, StdioServerParameters  # noqa: E402
from mcp.client import Client  # noqa: E402

from pyhall_mcp.traces import (  # noqa: E402
    STEP,
    Frame,
    Trace,
    apply_step,
    copy_hall,
    hall_label,
    parse_iso,
    replay,
)

ERAS = {"legacy": "legacy", "modern": "auto"}  # era -> the SDK Client's mode
_CLI = "import sys; from pyhall_mcp.cli import main; sys.exit(main())"
DEMO = "demo"

#: 401 short sentences: the summariser reports progress at 200, 400 and 401.
LONG_TEXT = " ".join(f"Line {n} says hello." for n in range(401))

#: A worker added while a session runs (the list_changed scenario).
SHOUTER = {
    "workers/shouter/worker.yaml": """\
worker_id: org.demo.shouter
worker_species_id: wrk.hello.greeter
version: 1.0.0
capabilities: [cap.hello.greet]
risk_tier: low
required_controls: [ctrl.obs.audit-log-append-only]
currently_implements: [ctrl.obs.audit-log-append-only]
allowed_environments: [dev, stage, prod, edge]
data_label: PUBLIC
tool:
  name: shout
  description: Greet someone loudly.
  input_schema:
    type: object
    properties: {name: {type: string, minLength: 1, maxLength: 100}}
    required: [name]
    additionalProperties: false
runner: {kind: python, entry: "shouter:run"}
timeout_s: 5
""",
    "workers/shouter/shouter.py": """\
def run(arguments, context):
    return {"greeting": "HELLO, " + arguments["name"].upper() + "!"}
""",
}


def demo_signed(root: Path = REPO) -> bool:
    """Whether every demo worker ships a signed attestation (then the floor stays on)."""
    workers = [p for p in (root / "workers").iterdir() if (p / "worker.yaml").is_file()]
    return bool(workers) and all((p / "attestation.dsse.json").is_file() for p in workers)


def demo_args() -> list[str]:
    """Launch options of the ordinary demo scenarios."""
    return [] if demo_signed() else ["--floor", "require_worker_attestation=false"]


@dataclass
class Session:
    """What a scenario can do besides talking MCP: change its hall, decide approvals."""

    client: Client
    era: str
    hall: Path
    state: Path
    steps: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def step(self, step: dict[str, Any]) -> None:
        """Change the hall now; replays make the same change at the same point."""
        at = time.time()
        apply_step(self.hall, step, state_dir=self.state)
        self.steps.append((at, step))

    async def call(self, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
        """Call a tool; a JSON-RPC error is part of the session, not a failure here."""
        try:
            return await self.client.call_tool(name, arguments, **kwargs)
        except MCPError as exc:
            return exc


Body = Callable[[Session], Awaitable[None]]


@dataclass
class Scenario:
    name: str
    description: str
    body: Body
    hall: str = DEMO  # "demo" or a directory relative to traces/
    args: Callable[[], list[str]] = demo_args
    setup: Callable[[], dict[str, Any] | None] = lambda: None
    eras: Sequence[str] = ("legacy", "modern")
    client_options: dict[str, Any] = field(default_factory=dict)


# -- the scenarios -------------------------------------------------------------------------------


async def basics(s: Session) -> None:
    await s.client.list_tools()
    await s.call("greet", {"name": "Ada"})
    await s.call("hash_document", {"text": "abc", "algorithm": "sha256"})
    await s.call("read_file", {"path": "notes/meeting.txt"})
    await s.call("greet", {"name": "Grace"}, meta={"dev.pyhall/correlation_id": "trace-basics-1"})
    await s.call("greet", {"name": "Linus"}, meta={"dev.pyhall/dry_run": True})
    await progress(s)


async def progress(s: Session) -> None:
    """A long summary with a progress token: notifications, then the result."""
    seen: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)

    await s.call(
        "summarize_document", {"text": LONG_TEXT, "max_sentences": 2}, progress_callback=on_progress
    )
    assert seen, "the summariser reported no progress"


async def denials(s: Session) -> None:
    await s.call("read_file", {"path": "../hall.yaml"})  # the reader's privilege envelope
    await s.call("delete_file", {"path": "../hall.yaml"})  # policy: outside the workspace
    await s.call("hash_document", {"text": "abc", "algorithm": "md5"})  # not in the schema
    await s.call("greet", {})  # missing a required argument
    await s.call("greet", {"name": "Ada", "shout": True})  # an argument the schema forbids
    await s.call("launch_missiles", {})  # unknown tool: a JSON-RPC error
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})  # held for a person


async def no_rule(s: Session) -> None:
    # --env prod: RESTRICTED reads match no rule, and deletions have no prod rule at all.
    await s.call(
        "read_file", {"path": "notes/meeting.txt"}, meta={"dev.pyhall/data_label": "RESTRICTED"}
    )
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})


async def one_greeting(s: Session) -> None:
    await s.call("greet", {"name": "Ada"})


async def jsonrpc_denials(s: Session) -> None:
    await s.call("delete_file", {"path": "../hall.yaml"})
    await s.call("read_file", {"path": "../hall.yaml"})
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})


async def timeouts(s: Session) -> None:
    await s.client.list_tools()
    await s.call("sleep", {"seconds": 5})  # the worker's timeout is 1 s
    with anyio.move_on_after(0.3):  # cancelled by the client: notifications/cancelled
        await s.call("sleep", {"seconds": 30})
    await s.call("sleep", {"seconds": 0})  # the gateway still serves


async def list_changed(s: Session) -> None:
    await s.client.list_tools()
    if s.era == "legacy":
        s.step({"write": SHOUTER})
        with anyio.fail_after(15):
            await s.changed.wait()
    else:
        async with s.client.listen(tools_list_changed=True) as events:
            s.step({"write": SHOUTER})
            with anyio.fail_after(15):
                async for _ in events:
                    break
    await s.client.list_tools()
    await s.call("shout", {"name": "Ada"})


async def approve_in_band(context: Any, params: Any) -> Any:
    """The person at the client: approves the draft's deletion, declines anything else."""
    import mcp.types as types

    approve = "old-draft.txt" in params.message
    return types.ElicitResult(
        action="accept" if approve else "decline",
        content={"approve": True, "note": "fine, it is a draft"} if approve else None,
    )


async def approvals_in_band(s: Session) -> None:
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})  # asked, approved, runs
    await s.call("delete_file", {"path": "notes/meeting.txt"})  # asked, declined: denied


async def approvals_operator(s: Session) -> None:
    held = await s.call("delete_file", {"path": "scratch/old-draft.txt"})
    approval_id = held.structured_content["pending_approval_id"]
    s.step({"approvals": {"decision": "approve", "approval_id": approval_id, "note": "ok"}})
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})  # the identical retry runs
    await s.call("delete_file", {"path": "scratch/old-draft.txt"})  # spent: held again


def attestation_args() -> list[str]:
    return []  # the hall's own floor: require_worker_attestation: true


def attestation_setup() -> dict[str, Any] | None:
    """Signed demo workers: tamper with one so that it fails; unsigned: nothing to do."""
    if not demo_signed():
        return None
    greeter = (REPO / "workers" / "greeter" / "greeter.py").read_text(encoding="utf-8")
    return {"write": {"workers/greeter/greeter.py": greeter + "\n# tampered after signing\n"}}


SCENARIOS = [
    Scenario(
        "basics",
        "listing, allowed calls, a client correlation id, a dry run, progress",
        basics,
    ),
    Scenario("denials", "policy deny, invalid arguments, unknown tool, held for a person", denials),
    Scenario(
        "denial-no-rule",
        "no matching rule (--env prod)",
        no_rule,
        args=lambda: [*demo_args(), "--env", "prod"],
    ),
    Scenario(
        "denial-tenant",
        "a tenant the hall does not serve (--tenant intruder)",
        one_greeting,
        args=lambda: [*demo_args(), "--tenant", "intruder"],
    ),
    Scenario(
        "denial-attestation",
        "a worker whose package fails attestation",
        one_greeting,
        args=attestation_args,
        setup=attestation_setup,
    ),
    Scenario(
        "deny-mode-jsonrpc",
        "denials and holds as JSON-RPC errors (--deny-mode jsonrpc)",
        jsonrpc_denials,
        args=lambda: [*demo_args(), "--deny-mode", "jsonrpc"],
    ),
    Scenario(
        "timeouts",
        "a worker timeout and a call cancelled by the client",
        timeouts,
        hall="halls/slow",
        args=lambda: [],
    ),
    Scenario("list-changed", "a worker added while the session runs", list_changed),
    Scenario(
        "approvals-in-band",
        "held calls asked of the person at the client (elicitation / input required)",
        approvals_in_band,
        client_options={"elicitation_callback": approve_in_band},
    ),
    Scenario(
        "approvals-operator",
        "a held call approved with `pyhall approvals approve`, then retried",
        approvals_operator,
    ),
]


# -- recording ---------------------------------------------------------------------------------


def _hall_source(label: str) -> Path:
    return REPO if label == DEMO else (HERE / label).resolve()


async def record_session(scenario: Scenario, era: str, out: Path, *, work: Path) -> Trace:
    """Run ``scenario`` through the relay into ``out``; return the finished trace."""
    hall = copy_hall(_hall_source(scenario.hall), work / "hall")
    setup = scenario.setup()
    if setup:
        apply_step(hall, setup)
    relay = [
        "-c",
        _CLI,
        "traces",
        "record",
        str(out),
        "--",
        sys.executable,
        "-m",
        "pyhall_mcp",
        "--hall",
        str(hall),
        "--state-dir",
        str(work / "state"),
        *scenario.args(),
    ]
    params = StdioServerParameters(
        command=sys.executable,
        args=relay,
        cwd=str(work),
        # Events go to stderr, never on the wire: off, to keep this script's output readable.
        env={"PYTHONPATH": str(REPO), "PYHALL_EVENTS": "off"},
    )
    session: Session | None = None

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed" and session:
            session.changed.set()

    options = {"mode": ERAS[era], "message_handler": on_message, **scenario.client_options}
    async with Client(params, **options) as client:
        session = Session(client, era, hall, work / "state")
        await scenario.body(session)
    trace = Trace.load(out)
    trace.header["hall"] = scenario.hall  # relative to traces/ (see _record)
    if setup:
        trace.header["setup"] = setup
    _insert_steps(trace, session.steps)
    trace.dump(out)
    return trace


def _insert_steps(trace: Trace, steps: list[tuple[float, dict[str, Any]]]) -> None:
    """Place each step among the frames by its time (t_ms counts from recorded_at)."""
    start = parse_iso(trace.header["recorded_at"])
    for at, step in steps:
        t_ms = int((at - start) * 1000)
        index = next((i for i, f in enumerate(trace.frames) if f.t_ms > t_ms), len(trace.frames))
        trace.frames.insert(index, Frame(STEP, t_ms, step=step))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: traces/)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--no-check", action="store_true", help="do not replay what was recorded")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:20} {s.description}")
        return 0
    unknown = set(args.names) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    chosen = [s for s in SCENARIOS if not args.names or s.name in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    failed = 0
    for scenario in chosen:
        for era in scenario.eras:
            out = args.out / f"{scenario.name}-{era}.jsonl"
            started = time.monotonic()
            try:
                _record(scenario, era, out)
            except Exception as exc:  # keep going: report every broken scenario at once
                print(f"FAILED to record {out.name}: {type(exc).__name__}: {exc}")
                failed += 1
                continue
            print(f"recorded {out.name} ({time.monotonic() - started:.1f} s)")
            written.append(out)
    if not args.no_check:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for result in pool.map(replay, written):
                print(result.report())
                failed += not result.ok
    others = sorted(set(args.out.glob("*.jsonl")) - set(written)) if not args.names else []
    for path in others:
        print(f"note: {path.name} is not made by this script (kept)")
    return 1 if failed else 0


def _record(scenario: Scenario, era: str, out: Path) -> None:
    """Record into a temporary file; replace ``out`` only when the session succeeded."""
    with tempfile.TemporaryDirectory(prefix="pyhall-trace-") as tmp:
        work = Path(tmp)
        draft = work / out.name
        anyio.run(lambda: record_session(scenario, era, draft, work=work))
        trace = Trace.load(draft)
        if scenario.hall != DEMO:
            trace.header["hall"] = hall_label(_hall_source(scenario.hall), out.parent)
        trace.dump(out)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
