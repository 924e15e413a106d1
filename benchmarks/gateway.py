"""Gateway benchmark: governed vs bare MCP round trips over real stdio, and cold start.

    .venv/bin/python benchmarks/gateway.py [--calls 2000] [--slices 20] [--cold 7]
                                           [--sdk] [--attestation] [--breakdown]

The same trivial worker (greet_worker.py) is served by (a) bare_server.py, a
bare MCP SDK low-level server, and (b) ``pyhall-mcp`` (``python -m pyhall_mcp``)
on a temporary hall with one rule, one policy allowing the tool, durable
receipts ON (two per call: decision and outcome) and events off. Both run as
real subprocesses, each on one stdio connection.

Main table: a raw JSON-lines client in the handshake era (initialize, then
tools/call), so the figures are server cost and stdio, not client cost; one
call at a time, then 8 in flight. It also serves the hall with ``audit.durability:
os`` (a commit reaches the OS, not the platter) and with receipts off, to show
what the durable write costs, and the bare server on pyhall-mcp's own stdio
transport (``pyhall_mcp._stdio``, event-loop pipes instead of the SDK's worker
threads), against which the governed rows are also given: governance's cost with
the transport alike. The servers of a table run side by side and
are measured in alternating slices, so that load from elsewhere on the machine
hits them alike; calls/s is total calls over total time; cpu us is the server
process's CPU time per call (user + system, every thread, from Linux /proc): the
baseline server is CPU-bound even one call at a time, so every microsecond of it
shows in the round trip.
``--sdk`` adds the same measurement through the official ``mcp.Client`` in
both eras. Cold start: spawn to the ``initialize`` response, median of N.
``--attestation``: the governed round trip with worker attestation on vs off
(the worker signed with pyhall_mcp.attestation, code unchanged), over stdio, then
``Hall.call`` in one process with receipts off (no stdio or fsync noise: the
dispatch cost itself). Every table also prints the median of per-slice ratios
("paired"), each slice against the baseline's slice run just before it; verdicts
go by it.
``--breakdown``: ``Hall.call`` in-process with receipts off/on and attestation
on, next to the cost of sealing one receipt and of one durable SQLite commit.

Targets (issues 3 and 7): governed within 1.25x of bare; cold start within
1.2x; attestation on within 5% of off. Tests never assert speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import greet_worker  # noqa: E402

IN_FLIGHT = 8
_INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "0"},
}


# -- the two servers -------------------------------------------------------------------------


def write_hall(
    root: Path, *, attestation: bool = False, audit: bool = True, durability: str = "fsync"
) -> Path:
    """A hall serving greet_worker: one rule, one policy, receipts on, events off."""
    worker = root / "workers" / "greet"
    worker.mkdir(parents=True)
    (root / "rules").mkdir()
    (root / "policies").mkdir()
    (root / "workspace").mkdir()
    shutil.copy(HERE / "greet_worker.py", worker / "greet_worker.py")
    record = {
        "worker_id": "org.bench.greeter",
        "worker_species_id": "wrk.bench.greeter",
        "version": "1.0.0",
        "capabilities": ["cap.bench.greet"],
        "risk_tier": "low",
        "required_controls": ["ctrl.obs.audit-log-append-only"],
        "currently_implements": ["ctrl.obs.audit-log-append-only"],
        "privilege_envelope": {"network_egress": "none"},
        "tool": {
            "name": greet_worker.NAME,
            "description": greet_worker.DESCRIPTION,
            "input_schema": greet_worker.INPUT_SCHEMA,
            "output_schema": greet_worker.OUTPUT_SCHEMA,
        },
        "runner": {"kind": "python", "entry": "greet_worker:run"},
        "timeout_s": 10,
    }
    (worker / "worker.yaml").write_text(json.dumps(record, indent=2))
    (root / "rules" / "bench.yaml").write_text(
        json.dumps(
            {
                "version": "1",
                "rules": [
                    {
                        "rule_id": "rr.bench.greet",
                        "match": {"capability_id": "cap.bench.greet"},
                        "decision": {
                            "candidate_workers_ranked": [
                                {"worker_species_id": "wrk.bench.greeter", "score_hint": 1.0}
                            ],
                            "required_controls_suggested": ["ctrl.obs.audit-log-append-only"],
                        },
                    }
                ],
            }
        )
    )
    (root / "policies" / "bench.yaml").write_text(
        "policies:\n"
        "  - id: pol.bench.greet\n"
        "    effect: allow\n"
        "    description: Anyone may be greeted.\n"
        "    when: {worker_id: org.bench.greeter, tool: greet}\n"
    )
    (root / "hall.yaml").write_text(
        json.dumps(
            {
                "name": "bench",
                "env": "dev",
                "tenant_id": "bench",
                "events": "off",
                "reload_interval_s": 1.0,
                "floors": {
                    "require_signatory": True,
                    "allowed_tenants": ["bench"],
                    "require_worker_attestation": attestation,
                    "enforce_policy_gate": True,
                    "enforce_required_controls": True,
                    "enforce_privilege_envelopes": True,
                },
                "audit": {"enabled": audit, "durability": durability},
            }
        )
    )
    if attestation:
        from pyhall_mcp.attestation import sign_package, trust_attestation_key
        from pyhall_mcp.layout import HallLayout
        from pyhall_mcp.signing import SigningKey

        key = SigningKey.generate()
        trust_attestation_key(HallLayout.for_hall(root).trusted_keys, key, ["org.bench"])
        sign_package(worker, key)
        # A package changed within the last 2 s is re-hashed on every call until it
        # settles (a same-tick edit would leave its stat data unchanged). A served hall's
        # workers are older than that: let this fresh one settle before measuring.
        time.sleep(2.1)
    return root


@dataclass(frozen=True)
class ServerSpec:
    label: str
    argv: list[str]


def bare_server() -> ServerSpec:
    return ServerSpec("bare SDK server", [sys.executable, str(HERE / "bare_server.py")])


def governed_server(label: str, hall: Path) -> ServerSpec:
    state = hall.parent / f"{hall.name}-state"
    argv = [sys.executable, "-m", "pyhall_mcp", "--hall", str(hall), "--state-dir", str(state)]
    return ServerSpec(label, argv)


def _child_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYHALL_EVENTS": "off"}
    for name in ("HOME", "LANG", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


# -- a raw JSON-lines client -----------------------------------------------------------------


class RawClient:
    """Newline-delimited JSON-RPC over a subprocess's stdio; the least client cost there is."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, spec: ServerSpec, log: Path) -> RawClient:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=_child_env(),
                limit=16 * 1024 * 1024,
            )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the server closed stdout"))

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def initialize(self) -> None:
        await self.request("initialize", _INIT_PARAMS)
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, name: str) -> None:
        result = await self.request(
            "tools/call", {"name": greet_worker.NAME, "arguments": {"name": name}}
        )
        if result.get("isError") or "structuredContent" not in result:
            raise RuntimeError(f"the call failed: {json.dumps(result)[:500]}")

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed batch: calls per second, every call's latency in seconds, and the
    server's CPU seconds spent meanwhile (None where the server's pid is unknown)."""

    rate: float
    latencies: list[float]
    cpu_s: float | None = None


Call = Callable[[str], Awaitable[None]]


@dataclass
class Session:
    """One open connection: how to call the tool, and the server's pid when known."""

    call: Call
    pid: int | None = None


def process_cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of a process, all its threads (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(session: Session, calls: int, in_flight: int) -> Run:
    call = session.call
    latencies: list[float] = []
    remaining = itertools.count()

    async def lane() -> None:
        while next(remaining) < calls:
            started = time.perf_counter()
            await call("Ada")
            latencies.append(time.perf_counter() - started)

    cpu_before = process_cpu_s(session.pid)
    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    cpu_after = process_cpu_s(session.pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Run(calls / elapsed, latencies, cpu)


Opener = Callable[[ServerSpec, contextlib.AsyncExitStack], Awaitable[Session]]


def raw_opener(log: Path) -> Opener:
    async def open_raw(spec: ServerSpec, stack: contextlib.AsyncExitStack) -> Session:
        client = await RawClient.spawn(spec, log)
        stack.push_async_callback(client.close)
        await client.initialize()
        return Session(client.call, client.process.pid)

    return open_raw


def sdk_opener(mode: str) -> Opener:
    async def open_sdk(spec: ServerSpec, stack: contextlib.AsyncExitStack) -> Session:
        from mcp import Client, StdioServerParameters

        params = StdioServerParameters(command=spec.argv[0], args=spec.argv[1:], env=_child_env())
        client = await stack.enter_async_context(Client(params, mode=mode))  # type: ignore[arg-type]
        await client.list_tools()

        async def call(name: str) -> None:
            result = await client.call_tool(greet_worker.NAME, {"name": name})
            if result.is_error:
                raise RuntimeError("the call failed")

        return Session(call)  # the SDK spawns the server: no pid, no CPU column

    return open_sdk


@dataclass
class Figures:
    rate: float  # calls / total time of the slices
    p50_ms: float
    p99_ms: float
    cpu_us: float | None  # the server's CPU time per call, all threads


def summarize(runs: list[Run]) -> Figures:
    pooled = sorted(x for run in runs for x in run.latencies)

    def at(q: float) -> float:
        return pooled[min(len(pooled) - 1, int(q * len(pooled)))] * 1000

    calls = sum(len(run.latencies) for run in runs)
    elapsed = sum(len(run.latencies) / run.rate for run in runs)
    cpu = [run.cpu_s for run in runs]
    cpu_us = None if None in cpu else sum(c for c in cpu if c is not None) / calls * 1e6
    return Figures(calls / elapsed, at(0.50), at(0.99), cpu_us)


async def compare(
    specs: list[ServerSpec], opener: Opener, calls: int, warmup: int, slices: int
) -> dict[str, dict[int, list[Run]]]:
    """All servers live at once, measured in alternating slices so drift hits all alike."""
    runs: dict[str, dict[int, list[Run]]] = {s.label: {1: [], IN_FLIGHT: []} for s in specs}
    async with contextlib.AsyncExitStack() as stack:
        sessions = {spec.label: await opener(spec, stack) for spec in specs}
        for session in sessions.values():
            await timed(session, warmup, IN_FLIGHT)
        for n in (1, IN_FLIGHT):
            for _ in range(slices):
                for label, session in sessions.items():
                    runs[label][n].append(await timed(session, max(1, calls // slices), n))
    return runs


async def cold_start(spec: ServerSpec, log: Path) -> float:
    started = time.perf_counter()
    client = await RawClient.spawn(spec, log)
    try:
        await client.request("initialize", _INIT_PARAMS)
        return time.perf_counter() - started
    finally:
        await client.close()


async def cold_starts(
    specs: list[ServerSpec], samples: int, log: Path
) -> dict[str, tuple[float, float]]:
    """(median, min) seconds from spawn to the initialize response, servers interleaved."""
    for spec in specs:
        await cold_start(spec, log)  # unmeasured: first start creates keys and the log
    times: dict[str, list[float]] = {spec.label: [] for spec in specs}
    for _ in range(samples):
        for spec in specs:
            times[spec.label].append(await cold_start(spec, log))
    return {label: (statistics.median(v), min(v)) for label, v in times.items()}


# -- where the time goes --------------------------------------------------------------------


async def _hall_calls(hall: Any, calls: int, in_flight: int) -> float:
    """Microseconds per ``Hall.call`` (the whole governed path, no MCP, no stdio)."""
    remaining = itertools.count()

    async def lane() -> None:
        while next(remaining) < calls:
            outcome = await hall.call(greet_worker.NAME, {"name": "Ada"})
            if outcome.value is None:
                raise RuntimeError(f"the call failed: {outcome.message}")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return (time.perf_counter() - started) / calls * 1e6


def _durable_commit_us(work: Path, rows: int = 300) -> float:
    """One SQLite WAL commit with synchronous=FULL, the floor under a durable receipt."""
    import sqlite3

    db = sqlite3.connect(work / "commit.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (payload TEXT)")
    started = time.perf_counter()
    for _ in range(rows):
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
        db.execute("COMMIT")
    db.close()
    return (time.perf_counter() - started) / rows * 1e6


def _seal_us(rounds: int = 2000) -> float:
    from pyhall_mcp.audit import build_receipt
    from pyhall_mcp.signing import SigningKey

    key = SigningKey.generate()
    body = {"kind": "decision", "decision": "allowed", "tool": "greet", "x": "y" * 900}
    started = time.perf_counter()
    for seq in range(1, rounds + 1):
        build_receipt(body, seq=seq, prev_receipt_hash="0" * 64, key=key)
    return (time.perf_counter() - started) / rounds * 1e6


async def attestation_in_process(work: Path, slices: int, per_slice: int = 500) -> None:
    """Attestation on vs off through ``Hall.call`` in one process, receipts and MCP off.

    Without stdio and fsync noise this is the dispatch cost itself: the halls differ
    only in ``require_worker_attestation``, and their slices alternate.
    """
    from pyhall_mcp.hall import Hall

    halls = {}
    for on in (False, True):
        name = f"ip-attestation-{'on' if on else 'off'}"
        hall = Hall.load(write_hall(work / name, attestation=on, audit=False))
        halls[on] = hall
    try:
        for hall in halls.values():
            await _hall_calls(hall, 500, 1)  # warm up
        micros: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(2 * slices):
            for on, hall in halls.items():
                micros[on].append(await _hall_calls(hall, per_slice, 1))
        pairs = list(zip(micros[False], micros[True], strict=True))
        paired = statistics.median(on / off for off, on in pairs)
        added = statistics.median(on - off for off, on in pairs)
        worker = halls[True].registry.records[0].worker_id
        attested = halls[True].registry.attestation_of(worker)
        assert attested is not None, "the attested hall registered no attestation"
        reader = attested[1]
        started = time.perf_counter()
        for _ in range(20_000):
            reader()
        check = (time.perf_counter() - started) / 20_000 * 1e6
    finally:
        for hall in halls.values():
            await hall.aclose()
    off, on = statistics.median(micros[False]), statistics.median(micros[True])
    verdict = "ok" if paired <= 1.05 else "OVER 1.05x"
    print(
        f"\nWorker attestation in-process (Hall.call, receipts off, {2 * slices} alternating "
        f"slices of {per_slice} calls; target on <= 1.05x off):\n"
        f"  attestation off {off:7.1f} us per call, on {on:7.1f} us; paired median ratio "
        f"{paired:.3f}x ({added:+.1f} us)  {verdict}\n"
        f"  the check itself (PackageMonitor.current_digest, settled package): {check:.1f} us"
    )


async def breakdown(work: Path, calls: int) -> None:
    """Where a governed call's time goes, measured in-process (no MCP, no stdio)."""
    from pyhall_mcp.hall import Hall

    rows: list[tuple[str, float]] = []
    for label, kwargs in (
        ("Hall.call, receipts off", {"audit": False}),
        ("Hall.call, receipts off, attestation on", {"audit": False, "attestation": True}),
        ("Hall.call, receipts on", {}),
    ):
        name = "bd-" + "-".join(f"{k}{v}" for k, v in kwargs.items())
        hall = Hall.load(write_hall(work / name, **kwargs), state_dir=work / f"{name}-state")
        hall.open_audit()
        try:
            await _hall_calls(hall, 200, IN_FLIGHT)  # warm up
            for n in (1, IN_FLIGHT):
                rows.append((f"{label}, {n} in flight", await _hall_calls(hall, calls, n)))
        finally:
            await hall.aclose()
    rows.append(("seal one receipt (canonical JSON, SHA-256, Ed25519)", _seal_us()))
    rows.append(("one durable SQLite commit (WAL, synchronous=FULL)", _durable_commit_us(work)))
    print("\nWhere the time goes, in-process, microseconds per call:")
    for label, micros in rows:
        print(f"  {label:<58} {micros:>8.0f} us")


# -- reporting -------------------------------------------------------------------------------


def paired_ratio(runs: dict[str, dict[int, list[Run]]], baseline: str, label: str, n: int) -> float:
    """Median over slices of time per call against the baseline's slice of the same round."""
    pairs = zip(runs[baseline][n], runs[label][n], strict=True)
    return statistics.median(base.rate / run.rate for base, run in pairs)


def print_table(
    title: str, runs: dict[str, dict[int, list[Run]]], baseline: str, target: float | None
) -> None:
    """Totals per row, the time ratio to the baseline, and the median of the per-slice
    ratios (each slice paired with the baseline's slice run just before it: the least
    disturbed estimate on a shared machine). The verdict goes by the paired median.
    ``cpu us``: the server process's CPU time per call, all threads, where known."""
    print(f"\n{title}")
    header = f"  {'server':<34} {'in flight':>9} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    print(header + f"{'cpu us':>7} {'time ratio':>10} {'paired':>7}")
    for label, by_n in runs.items():
        for n, batch in by_n.items():
            fig, base = summarize(batch), summarize(runs[baseline][n])
            ratio = base.rate / fig.rate
            paired = paired_ratio(runs, baseline, label, n)
            mark = ""
            if target is not None and label != baseline:
                mark = "  ok" if paired <= target else f"  OVER {target}x"
            cpu = "-" if fig.cpu_us is None else f"{fig.cpu_us:.0f}"
            print(
                f"  {label:<34} {n:>9} {fig.rate:>9.0f} {fig.p50_ms:>8.2f} {fig.p99_ms:>8.2f} "
                f"{cpu:>7} {ratio:>9.2f}x {paired:>6.2f}x{mark}"
            )


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="pyhall-bench-"))
    log = work / "servers.log"
    try:
        bare = bare_server()
        bare_loop = ServerSpec("bare server, pyhall stdio", [*bare.argv, "--pyhall-stdio"])
        governed = governed_server("pyhall-mcp (governed)", write_hall(work / "hall"))
        os_durable = governed_server(
            "pyhall-mcp (durability: os)", write_hall(work / "hall-os", durability="os")
        )
        no_audit = governed_server(
            "pyhall-mcp (receipts off)", write_hall(work / "hall-no-audit", audit=False)
        )
        print(
            f"gateway benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"{args.calls} calls per row in {args.slices} alternating slices;\n"
            "time ratio = baseline calls/s / this row's calls/s (time per call vs the baseline)"
        )

        def measure(specs: list[ServerSpec], opener: Opener) -> Awaitable[dict[str, Any]]:
            return compare(specs, opener, args.calls, args.warmup, args.slices)

        raw = raw_opener(log)
        results = await measure([bare, bare_loop, governed, os_durable, no_audit], raw)
        print_table(
            "Round trip, raw JSON-lines client, handshake era (target governed <= 1.25x):",
            results,
            bare.label,
            1.25,
        )
        print(f"  against the {bare_loop.label} (the transport alike; paired, 1 / {IN_FLIGHT}):")
        for spec in (governed, os_durable, no_audit):
            ratios = [paired_ratio(results, bare_loop.label, spec.label, n) for n in (1, IN_FLIGHT)]
            print(f"    {spec.label:<32} {ratios[0]:>5.2f}x {ratios[1]:>5.2f}x")

        if args.sdk:
            for mode, era in (("legacy", "handshake era"), ("auto", "2026-07-28 era")):
                results = await measure([bare, governed], sdk_opener(mode))
                print_table(f"Round trip, mcp.Client, {era}:", results, bare.label, 1.25)

        if args.attestation:
            for audit, what in ((True, "receipts on"), (False, "receipts off")):
                plain, attested = (
                    governed_server(
                        f"{what}, attestation {'on' if on else 'off'}",
                        write_hall(work / f"att-{audit}-{on}", attestation=on, audit=audit),
                    )
                    for on in (False, True)
                )
                results = await measure([plain, attested], raw)
                print_table(
                    f"Worker attestation, {what}, raw client (target on <= 1.05x off):",
                    results,
                    plain.label,
                    1.05,
                )
            await attestation_in_process(work, args.slices)

        if args.breakdown:
            await breakdown(work, args.calls)

        cold = await cold_starts([bare, governed], args.cold, log)
        print(f"\nCold start, spawn to the initialize response, {args.cold} samples (target 1.2x):")
        print(f"  {'server':<34} {'median':>8} {'min':>8}")
        for label, (median, best) in cold.items():
            print(f"  {label:<34} {median * 1000:>5.0f} ms {best * 1000:>5.0f} ms")
        ratios = [g / b for g, b in zip(cold[governed.label], cold[bare.label], strict=True)]
        verdict = "ok" if ratios[0] <= 1.2 else "OVER 1.2x"
        print(f"  {'ratio governed / bare':<34} {ratios[0]:>7.2f}x {ratios[1]:>7.2f}x  {verdict}")
    except BaseException:
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per session")
    parser.add_argument(
        "--slices", type=int, default=20, help="alternating slices the calls are measured in"
    )
    parser.add_argument("--cold", type=int, default=7, help="cold start samples per server")
    parser.add_argument("--sdk", action="store_true", help="also measure through mcp.Client")
    parser.add_argument("--attestation", action="store_true", help="compare attestation on vs off")
    parser.add_argument(
        "--breakdown", action="store_true", help="in-process cost of each governed stage"
    )
    return parser


if __name__ == "__main__":
    asyncio.run(main(_parser().parse_args()))
