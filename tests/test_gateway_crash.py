"""SIGKILL in the middle of a burst of calls: every call the client got an answer to
has its decision receipt, and the chain still verifies."""

from __future__ import annotations

import signal

from pyhall_mcp.audit import verify_log
from pyhall_mcp.layout import HallLayout


def _call(i: int) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": i,
        "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": f"call {i}"},
            "_meta": {"dev.pyhall/correlation_id": f"burst-{i}"},
        },
    }


def test_sigkill_mid_burst_keeps_a_receipt_for_every_answer(raw_gateway) -> None:
    # Back-to-back calls, the next sent as soon as the previous is answered; the kill
    # lands right after an answer, when a receipt not yet on disk would be lost.
    answered: list[str] = []
    for i in range(1, 61):
        raw_gateway.send(_call(i))
        result = raw_gateway.receive()["result"]
        answered.append(result["_meta"]["dev.pyhall/governance"]["correlation_id"])
    raw_gateway.send(_call(61))  # one more in flight while the gateway dies
    raw_gateway.proc.send_signal(signal.SIGKILL)
    assert raw_gateway.proc.wait(timeout=10) == -signal.SIGKILL

    report = verify_log(HallLayout.for_hall(raw_gateway.hall))
    assert report.ok, report.first_error
    decided = {b["correlation_id"] for b in raw_gateway.receipts() if b["kind"] == "decision"}
    missing = [c for c in answered if c not in decided]
    assert not missing, f"answered without a durable decision receipt: {missing}"
