"""``pyhall-mcp``: the MCP server that serves a hall's workers as governed tools.

Built on the official SDK's low-level ``Server`` (both protocol eras on one
stdio process). It translates MCP to ``Hall.call`` and back and holds no
governance of its own: a denial is a tool error result the model can read (or
a JSON-RPC error with ``--deny-mode jsonrpc``), an unknown tool is -32602,
and no exception text ever reaches the client. stdout is the protocol;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

from . import __version__, approvals
from ._stdio import InvalidMessage, stdio_streams
from .errors import ConfigError, PyhallError, report_failure
from .hall import (
    META_GOVERNANCE,
    CallOutcome,
    Hall,
    overrides_from_environ,
    parse_floor,
    readiness_problems,
    settings_warnings,
)
from .layout import HallLayout
from .otel import annotate_current_span, configure_tracing
from .policy import YamlPolicyEngine

__all__ = ["DENIED_CODE", "HELD_CODE", "Gateway", "build_server", "check_launch", "main"]

#: JSON-RPC error codes of ``--deny-mode jsonrpc`` (outside the SDK's -32000..-32099).
DENIED_CODE = -31001
HELD_CODE = -31002
INVALID_PARAMS = -32602
_EOF_GRACE_S = 5.0

_INSTRUCTIONS = (
    "Every tool here is governed by a WCP hall: each call is routed, checked against "
    "policy and receipted before it runs. A denied call returns isError with a deny_code; "
    "do not retry it unchanged. A held call needs a person's approval first."
)


def _fingerprint(paths: Sequence[Path], skip: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detection for the hall's configuration (no file reads)."""
    entries = []
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root) if root.is_dir() else [("", [], [root])]:
            dirnames[:] = [
                d for d in dirnames if d not in ("__pycache__", ".git") and Path(dirpath, d) != skip
            ]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                entries.append((path, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


def _rule_paths_named(layout: Any) -> list[Path]:
    """The rule paths hall.yaml names as it is now (best effort: a broken file names none)."""
    from ._yaml import load_document

    try:
        doc = load_document(layout.hall_yaml)
    except PyhallError:
        return []
    entries = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return []
    return [(layout.root / str(entry)).resolve() for entry in entries]


class Gateway:
    """The hall behind the MCP server; swapped whole when its workers change on disk."""

    def __init__(self, hall: Hall, *, overrides: dict[str, Any] | None = None) -> None:
        self.hall = hall
        self.overrides = overrides or {}
        self.bus = InMemorySubscriptionBus()
        self._session: Any = None  # the latest handshake-era session, for list_changed
        self._tools: types.ListToolsResult | None = None
        self.inflight = 0  # calls being handled; shutdown waits for them to unwind
        # The baseline is taken here, not when watching starts: a change made while the
        # server starts up would otherwise be part of the baseline and never reloaded.
        self._seen = self._fingerprint()

    # -- MCP handlers ---------------------------------------------------------------
    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._remember(ctx)
        if self._tools is None:
            self._tools = types.ListToolsResult(tools=[_tool(r) for r in self.hall.tools()])
        return self._tools

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        self._remember(ctx)
        self.inflight += 1
        try:
            return await self._call_tool(ctx, params)
        except MCPError:
            raise  # a deliberate JSON-RPC answer (unknown tool, --deny-mode jsonrpc)
        except Exception:
            # Never let exception text reach the client (the SDK would send it raw).
            report_failure("tools/call")
            return types.CallToolResult(
                content=[
                    types.TextContent(
                        type="text",
                        text="The gateway failed while handling this call; nothing was run.",
                    )
                ],
                structured_content={"denied": True, "deny_code": "DENY_INTERNAL_ERROR"},
                is_error=True,
            )
        finally:
            self.inflight -= 1

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        meta = dict(params.meta or {})

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(value, total, message)

        hall = self.hall
        if params.request_state is not None and hall.approvals is not None:
            # 2026-07-28 retry: the (sealed) state names the approval the person answered.
            outcome = await approvals.resume_in_band(hall, params, meta, progress)
        else:
            outcome = await hall.call(params.name, params.arguments, meta=meta, progress=progress)
            if outcome.status == "held" and hall.approvals is not None:
                asked = await approvals.ask_in_band(hall, ctx, params, meta, outcome, progress)
                if not isinstance(asked, CallOutcome):
                    return asked  # InputRequiredResult: the client asks the person and retries
                outcome = asked
        if outcome.status == "held":
            _tell_operator(outcome, hall.layout)
        annotate_current_span(outcome.status, outcome.governance)
        return self._answer(outcome)

    def _answer(self, outcome: CallOutcome) -> types.CallToolResult:
        gov = {META_GOVERNANCE: outcome.governance}
        if outcome.status == "unknown_tool":
            raise MCPError(INVALID_PARAMS, outcome.message, data=outcome.governance)
        if outcome.status in ("denied", "held") and self.hall.settings.deny_mode == "jsonrpc":
            code = HELD_CODE if outcome.status == "held" else DENIED_CODE
            raise MCPError(code, outcome.message, data=outcome.governance)
        if outcome.status == "allowed" and outcome.value is not None:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=json.dumps(outcome.value))],
                structured_content=outcome.value,
                _meta=gov,
            )
        structured: dict[str, Any] | None = None
        if outcome.status in ("denied", "held", "dry_run"):
            structured = _denial_summary(outcome)
        elif outcome.status == "invalid_arguments":
            structured = {"invalid_arguments": True, "errors": outcome.errors}
        text = outcome.message
        if outcome.errors and outcome.status == "invalid_arguments":
            text += " " + "; ".join(outcome.errors)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=structured,
            # Only a worker's own output is a success: a dry run produced none (and an
            # SDK client checks every success against the tool's output schema).
            is_error=True,
            _meta=gov,
        )

    def longest_timeout_s(self) -> float:
        return max((record.timeout_s for record in self.hall.tools()), default=0.0)

    def _remember(self, ctx: ServerRequestContext[Any]) -> None:
        self._session = ctx.session

    # -- reload ------------------------------------------------------------------------
    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        # Also what hall.yaml names now: after a reload refused for a rule file that
        # does not exist yet, writing that file must reload.
        named = _rule_paths_named(self.hall.layout)
        paths = list(dict.fromkeys([*self.hall.config_paths(), *named]))
        return _fingerprint(paths, skip=self.hall.layout.state_dir)

    async def watch(self, interval_s: float) -> None:
        """Reload the hall when its configuration changes (hall.yaml, rules, policies,
        trusted keys, workers); a bad reload keeps the old hall."""
        seen = self._seen
        while True:
            await anyio.sleep(interval_s)
            current = await anyio.to_thread.run_sync(self._fingerprint)
            if current == seen:
                continue
            seen = current
            await self.reload()

    async def reload(self) -> bool:
        old = self.hall
        try:
            new = await anyio.to_thread.run_sync(
                lambda: Hall.load(
                    old.layout.root, overrides=self.overrides, state_dir=old.layout.state_dir
                )
            )
        except Exception as exc:  # a bad reload keeps the old hall; the gateway serves on
            # a described error (ConfigError's text names file and fix) or the whole story
            why = str(exc) if isinstance(exc, PyhallError) else traceback.format_exc()
            sys.stderr.write(f"pyhall-mcp: reload refused, keeping the previous hall: {why}\n")
            return False
        new.audit = old.audit
        new.approvals = old.approvals
        self.hall = new
        self._tools = None
        sys.stderr.write(f"pyhall-mcp: reloaded {len(new.served)} tools\n")
        if new.settings.audit != old.settings.audit:  # the open log cannot change under calls
            sys.stderr.write(
                "pyhall-mcp: warning: the audit settings in hall.yaml changed; they take "
                "effect only when the gateway restarts\n"
            )
        await self.notify_tools_changed()
        return True

    async def notify_tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        session = self._session
        if session is not None:
            # The client may be gone; there is nobody to tell then.
            with contextlib.suppress(Exception):
                await session.send_tool_list_changed()


def _tool(record: Any) -> types.Tool:
    spec = record.tool
    annotations = spec.annotations
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=types.ToolAnnotations(
            title=annotations.get("title"),
            read_only_hint=annotations.get("readOnlyHint"),
            destructive_hint=annotations.get("destructiveHint"),
            idempotent_hint=annotations.get("idempotentHint"),
            open_world_hint=annotations.get("openWorldHint"),
        )
        if annotations
        else None,
    )


def _tell_operator(outcome: CallOutcome, layout: HallLayout) -> None:
    """The operator's next step goes to stderr (their log), never into the model's answer:
    a command that works from anywhere, naming this hall and its state directory."""
    approval_id = outcome.governance.get("pending_approval_id")
    if approval_id:
        where = f"--hall {shlex.quote(str(layout.root))}"
        if layout.state_source in ("--state-dir", "PYHALL_STATE_DIR"):  # not the default
            where += f" --state-dir {shlex.quote(str(layout.state_dir))}"
        sys.stderr.write(
            f"pyhall-mcp: {outcome.tool} held for approval {approval_id}; decide with "
            f"`pyhall approvals show|approve|deny {approval_id} {where}`\n"
        )


def _denial_summary(outcome: CallOutcome) -> dict[str, Any]:
    gov = outcome.governance
    summary = {
        "denied": outcome.status != "dry_run",
        "deny_code": gov.get("deny_code"),
        "deny_message": gov.get("deny_message"),
        "decision_id": gov.get("decision_id"),
        "correlation_id": gov.get("correlation_id"),
        "matched_rule_id": gov.get("matched_rule_id"),
        "policy_version": gov.get("policy_version"),
        "receipt_id": gov.get("receipt_id"),
    }
    if outcome.status == "held":
        summary.update(
            held=True,
            pending_approval_id=gov.get("pending_approval_id"),
            approval_expires_at=gov.get("approval_expires_at"),
            supervisor_level=gov.get("supervisor_level"),
        )
    if outcome.status == "dry_run":
        summary.update(dry_run=True, would_run=gov.get("worker_id"))
    return summary


def build_server(gateway: Gateway, *, watch: bool = True) -> Server[Any]:
    """The SDK server for ``gateway``; its lifespan opens the audit log and watches for reloads."""

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        hall = gateway.hall
        await anyio.to_thread.run_sync(hall.open_audit)
        async with anyio.create_task_group() as tasks:
            interval = hall.settings.reload_interval_s
            if watch and interval > 0:
                tasks.start_soon(gateway.watch, interval)
            tasks.start_soon(
                approvals.sweep_forever, lambda: gateway.hall.approvals, approvals.SWEEP_INTERVAL_S
            )
            try:
                yield {"gateway": gateway}
            finally:
                tasks.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    desk = gateway.hall.approvals
                    if desk is not None:  # an operator's last decisions, before the log closes
                        await approvals.sweep_once(desk)
                    await gateway.hall.aclose()

    server = Server(
        "pyhall-mcp",
        version=__version__,
        title="pyhall-mcp governance gateway",
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=gateway.list_tools,
        on_call_tool=gateway.call_tool,
        on_subscriptions_listen=ListenHandler(gateway.bus),
    )
    # Seal the approval id an InputRequiredResult carries: encrypted, bound to tool and
    # arguments, expiring; the approvals store makes it single use.
    ttl = float(gateway.hall.config.approval_ttl_s)
    security = RequestStateSecurity.ephemeral(ttl=ttl)
    server.middleware.append(RequestStateBoundary(security, default_audience="pyhall-mcp"))
    return server


class _Ledger:
    """The requests the client is owed an answer to, and those the server awaits from it.

    At the end of input the SDK cancels every handler still running, so a call whose
    worker had already run would lose its answer although its receipts say it ran (a
    client that writes its requests and closes stdin, as ``printf ... | pyhall-mcp``
    does). The read side therefore holds the end of input back until every request is
    answered, or only requests waiting on the client (which can no longer answer)
    remain, or ``grace_s`` has passed.
    """

    def __init__(self, grace_s: Callable[[], float]) -> None:
        self.grace_s = grace_s  # asked at the end: a reload may have brought slower workers
        self._owed: set[types.RequestId] = set()
        self._awaited: set[types.RequestId] = set()
        self._changed = anyio.Event()

    #: Requests that stay open for the whole connection: never waited for.
    _OPEN_ENDED = frozenset({"subscriptions/listen"})

    def received(self, message: Any) -> None:
        if isinstance(message, types.JSONRPCRequest):
            if message.method not in self._OPEN_ENDED:
                self._owed.add(message.id)
        elif isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self._settle(self._awaited, message.id)
        elif _is_cancel(message):  # the client withdrew a request: it gets no answer
            self._settle(self._owed, message.params.get("requestId"))

    def sent(self, message: Any) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self._awaited.add(message.id)
        elif isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self._settle(self._owed, message.id)
        elif _is_cancel(message):  # we stopped waiting for the client's answer
            self._settle(self._awaited, message.params.get("requestId"))

    def _settle(self, ids: set[types.RequestId], request_id: Any) -> None:
        with contextlib.suppress(TypeError):  # an unhashable id was never recorded
            ids.discard(request_id)
        self._changed.set()
        self._changed = anyio.Event()

    async def drained(self) -> None:
        """Return once nothing more can be answered (or after ``grace_s``)."""
        with anyio.move_on_after(self.grace_s()):
            while len(self._owed) > len(self._awaited):
                await self._changed.wait()


def _is_cancel(message: Any) -> bool:
    return (
        isinstance(message, types.JSONRPCNotification)
        and message.method == "notifications/cancelled"
        and isinstance(message.params, dict)
    )


class _ClientStream:
    """The stdio read stream: answers lines that are not JSON-RPC, and finishes what it began.

    The SDK drops a line that is not JSON-RPC silently; JSON-RPC 2.0 wants a -32700
    (not JSON) or -32600 (JSON, but not a message) error with a null id. At the end
    of input it waits for :class:`_Ledger` to drain. Everything else passes through
    unchanged (other attributes, e.g. ``last_context``, delegate).
    """

    def __init__(self, inner: Any, write: Any, ledger: _Ledger) -> None:
        self._inner = inner
        self._write = write
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def receive(self) -> Any:
        from mcp.shared.message import SessionMessage

        while True:
            try:
                item = await self._inner.receive()
            except anyio.EndOfStream:
                await self._ledger.drained()
                raise
            if not isinstance(item, Exception):
                self._ledger.received(item.message)
                return item
            errors = getattr(item, "errors", lambda: [])()
            not_json = bool(errors) and errors[0].get("type") == "json_invalid"
            if not_json:
                error = types.ErrorData(code=types.PARSE_ERROR, message="Parse error")
            else:
                reason = f": {item}" if isinstance(item, InvalidMessage) else ""
                message = f"Invalid Request{reason}"
                error = types.ErrorData(code=types.INVALID_REQUEST, message=message)
            request_id = None if not_json else _readable_id(errors)
            await self._write.send(
                SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
            )

    def __aiter__(self) -> _ClientStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _ClientStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.aclose()


def _readable_id(errors: list[dict[str, Any]]) -> types.RequestId | None:
    """The id of a request that failed validation, when it could be read: the client
    is waiting on that id (JSON-RPC 2.0 wants null only when it could not be read)."""
    for error in errors:
        message = error.get("input")
        if isinstance(message, dict) and "method" in message:
            value = message.get("id")
            if isinstance(value, int | str) and not isinstance(value, bool):
                return value
    return None


class _ServerStream:
    """The stdio write stream, telling :class:`_Ledger` what has been answered."""

    def __init__(self, inner: Any, ledger: _Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, item: Any) -> None:
        try:
            await self._inner.send(item)
        finally:  # delivered, or undeliverable (the client left): not owed any more
            self._ledger.sent(item.message)

    async def __aenter__(self) -> _ServerStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)


async def serve_stdio(gateway: Gateway) -> None:
    server = build_server(gateway)
    async with anyio.create_task_group() as tasks:
        # SIGTERM/SIGINT/SIGHUP cancel the server: running workers' process groups are
        # killed and reaped, outcome receipts written and a final checkpoint signed.
        tasks.start_soon(_stop_on_signal, gateway, tasks.cancel_scope)

        # At the end of input, calls in flight get as long as the slowest worker may run,
        # and then the client as long again to read their answers.
        def grace_s() -> float:
            return gateway.longest_timeout_s() + _EOF_GRACE_S

        async with stdio_streams(flush_timeout_s=grace_s) as (read, write):
            ledger = _Ledger(grace_s=grace_s)
            await server.run(
                _ClientStream(read, write, ledger),
                _ServerStream(write, ledger),
                server.create_initialization_options(NotificationOptions(tools_changed=True)),
            )
        tasks.cancel_scope.cancel()


async def _stop_on_signal(gateway: Gateway, scope: anyio.CancelScope) -> None:
    import signal

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            sys.stderr.write(f"pyhall-mcp: {signal.Signals(signum).name}, shutting down\n")
            break
    scope.cancel()
    # Calls in flight unwind: their runners kill and reap the workers' process groups
    # and write the outcome receipts. When stdin is not a pipe the SDK's stdin reader is a
    # thread no cancellation reaches, so once the evidence is safe the process leaves.
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        while gateway.inflight:
            await anyio.sleep(0.02)
        await gateway.hall.aclose()
    sys.stderr.flush()
    os._exit(0)


# -- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyhall-mcp",
        description="Serve a hall's workers as governed MCP tools over stdio.",
        epilog="Every option can also be set with a PYHALL_* environment variable "
        "(PYHALL_HALL, PYHALL_ENV, PYHALL_TENANT, PYHALL_TENANT_RISK, PYHALL_QOS, "
        "PYHALL_DATA_LABEL, PYHALL_DENY_MODE, PYHALL_EVENTS, PYHALL_TENANT_CREDENTIAL, "
        "PYHALL_STATE_DIR, "
        "PYHALL_<FLOOR> such as PYHALL_REQUIRE_WORKER_ATTESTATION=false).",
    )
    parser.add_argument(
        "--hall",
        metavar="DIR",
        help="hall directory (default: $PYHALL_HALL, else the bundled demo hall)",
    )
    parser.add_argument("--env", choices=["dev", "stage", "prod", "edge"])
    parser.add_argument("--tenant", dest="tenant_id", metavar="ID")
    parser.add_argument("--tenant-risk", choices=["low", "medium", "high"])
    parser.add_argument("--qos", dest="qos_class", choices=["P0", "P1", "P2", "P3"])
    parser.add_argument("--data-label", choices=["PUBLIC", "INTERNAL", "RESTRICTED"])
    parser.add_argument("--deny-mode", choices=["result", "jsonrpc"])
    parser.add_argument("--events", choices=["stderr", "off"], help="WCP events as JSON lines")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="receipts, keys and approvals (default: DIR/.pyhall or $PYHALL_STATE_DIR)",
    )
    parser.add_argument(
        "--floor",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a hall floor, e.g. require_worker_attestation=false",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="load and validate the hall, print a summary to stderr, exit",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --check: also print the summary as one JSON object on stdout",
    )
    parser.add_argument(
        "--record",
        metavar="OUT.jsonl",
        help="record this session as a trace (replay it with `pyhall traces replay`)",
    )
    parser.add_argument("--version", action="version", version=f"pyhall-mcp {__version__}")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = overrides_from_environ()
    for key in (
        "env",
        "tenant_id",
        "tenant_risk",
        "qos_class",
        "data_label",
        "deny_mode",
        "events",
    ):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    floors = dict(out.get("floors", {}))
    for item in args.floor:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(
                f"--floor {item!r}: expected NAME=VALUE",
                fix="e.g. --floor require_worker_attestation=false",
            )
        name = name.strip()
        floors[name] = parse_floor(name, value, f"launch flag --floor {name}")
    if floors:
        out["floors"] = floors
    return out


def _report_check(hall: Hall, *, as_json: bool = False) -> int:
    """``--check``: 0 when every enrolled worker would be served and callable, else 1
    (the gateway would still start, serving the rest; CI should hear about it)."""
    where = (
        f"hall {hall.layout.root} (state {hall.layout.state_dir}): {len(hall.served)} tools, "
        f"env {hall.settings.env}, tenant {hall.settings.tenant_id}"
    )
    issues = [f"quarantined: {problem}" for problem in hall.problems]
    issues += [f"{hall.rules.source}: shadowed rule: {s['reason']}" for s in hall.rules.shadowed]
    issues += [
        f"every call of {worker_id} will be denied: attestation failed ({code})"
        for worker_id, code in sorted(hall.attestation_failures.items())
    ]
    issues += [p.describe() for p in readiness_problems(hall.layout, hall.settings, hall.trusted)]
    issues += _operator_warnings(hall)
    notes = _operator_notes(hall)
    sys.stderr.writelines(f"pyhall-mcp: note: {note}\n" for note in notes)
    if as_json:
        summary = {
            "ok": not issues,
            "hall": str(hall.layout.root),
            "state_dir": str(hall.layout.state_dir),
            "env": hall.settings.env,
            "tenant_id": hall.settings.tenant_id,
            "tools": sorted(hall.served),
            "problems": issues,
            "notes": notes,
        }
        sys.stdout.write(json.dumps(summary) + "\n")
    if not issues:
        sys.stderr.write(f"pyhall-mcp: {where}: OK\n")
        return 0
    sys.stderr.write(f"pyhall-mcp: {where}; {len(issues)} problem(s):\n")
    sys.stderr.writelines(f"  {issue}\n" for issue in issues)
    return 1


def _operator_warnings(hall: Hall) -> list[str]:
    """Settings the operator chose that weaken what a call proves: never silent."""
    warnings = settings_warnings(hall.settings, hall.registry.records)
    warnings += [
        f"tool {name}: the kernel has no usable Landlock, so every call fails "
        "(runner.sandbox: landlock)"
        for name, sandbox in _sandboxes_missing(hall)
        if sandbox == "landlock"
    ]
    return warnings


def _operator_notes(hall: Hall) -> list[str]:
    """What the operator should know that is no fault: said at start and by --check."""
    notes = [
        f"tool {name} runs unconfined: the kernel has no usable Landlock (runner.sandbox: auto)"
        for name, sandbox in _sandboxes_missing(hall)
        if sandbox == "auto"
    ]
    if isinstance(hall.policy, YamlPolicyEngine):
        notes += [f"policy: {notice.describe()}" for notice in hall.policy.notices]
    return notes


def _sandboxes_missing(hall: Hall) -> list[tuple[str, str]]:
    """(tool, runner.sandbox) of the served workers that ask for a sandbox this kernel lacks."""
    from .runners import SubprocessRunner, landlock_abi

    if landlock_abi():
        return []
    return [
        (name, served.runner.sandbox)
        for name, served in sorted(hall.served.items())
        if isinstance(served.runner, SubprocessRunner) and served.runner.sandbox != "none"
    ]


def check_launch(argv: Sequence[str]) -> Hall:
    """The hall ``pyhall-mcp ARGV`` would serve; raises what would stop it from starting
    (``ConfigError`` naming the file or setting, ``PyhallError``). For commands that
    start a gateway, so the user reads the reason and not a broken connection."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        raise ConfigError("the gateway's arguments are invalid (see the message above)") from None
    hall = _load(args, inspect_only=True)[0]
    hall.check_start()
    return hall


def _load(args: argparse.Namespace, *, inspect_only: bool) -> tuple[Hall, dict[str, Any]]:
    from .layout import hall_dir_from

    overrides = _overrides(args)
    root = hall_dir_from(args.hall)
    hall = Hall.load(root, overrides=overrides, state_dir=args.state_dir, inspect_only=inspect_only)
    return hall, overrides


def _open_missing_std_fds() -> None:
    """Point a closed fd 0, 1 or 2 at the null device before anything opens a file.

    Launched with one of them closed (``2>&-``), the next file opened (the audit lock,
    the log) would take its number, and what is written there meant for stdout or
    stderr (worker noise, or the protocol itself) would land in that file.
    """
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:  # Python found it closed at startup
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    _open_missing_std_fds()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.json and not args.check:
        parser.error("--json goes with --check (serving speaks MCP on stdout)")
    try:
        # --check and --record only look: the recorded child loads the hall to serve it
        hall, overrides = _load(args, inspect_only=args.check or bool(args.record))
        if args.record:  # serve from a child process behind the recording relay
            from .traces import record_gateway

            return record_gateway(args.record, sys.argv[1:] if argv is None else argv)
        if args.check:
            hall.check_start()  # what would refuse to start is a refusal here too
            configure_tracing(install=False)
            return _report_check(hall, as_json=args.json)
        hall.check_start()  # a damaged store or key: refused with its file and fix
        hall.open_audit()  # before serving: a hall that cannot receipt does not start
        for warning in _operator_warnings(hall):  # the operator's choices, never silent
            sys.stderr.write(f"pyhall-mcp: warning: {warning}\n")
        for note in _operator_notes(hall):
            sys.stderr.write(f"pyhall-mcp: note: {note}\n")
        configure_tracing()
    except PyhallError as exc:
        sys.stderr.write(f"pyhall-mcp: refusing to start: {exc}\n")  # a ConfigError's str
        if args.check and args.json:  # names its file, location and fix
            refused = exc.as_dict() if isinstance(exc, ConfigError) else {"message": str(exc)}
            sys.stdout.write(json.dumps({"ok": False, "refused": refused}) + "\n")
        return 3
    try:
        anyio.run(serve_stdio, Gateway(hall, overrides=overrides))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: say what, not how
        sys.stderr.write(f"pyhall-mcp: stopped: {type(exc).__name__}\n")
        return 4
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
