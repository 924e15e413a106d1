"""``pyhall scaffold``: a new worker directory, ready to run."""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..layout import bundled_demo_hall
from ..registry import is_worker_id
from ._common import EXIT_USAGE, CommandFailed, add_hall_arg, add_json_arg, emit, hall_dir

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_CAP = re.compile(r"^cap\.[a-z0-9-]+\.[a-z0-9-]+$")

_PYTHON_CODE = '''"""{title}: called by the hall as ``{module}:run(arguments, context)``."""

from __future__ import annotations

from typing import Any


def run(arguments: dict[str, Any], context: Any) -> dict[str, Any]:
    # ``context`` carries correlation_id, decision_id, tenant_id, env, data_label and
    # workspace; never the client's credentials.
    text = arguments["text"]
    return {{"result": text.upper()}}
'''

_SUBPROCESS_CODE = '''"""{title}: one JSON document on stdin, one JSON line on stdout."""

import json
import sys


def main() -> None:
    request = json.load(sys.stdin)  # {{"arguments": ..., "context": ...}}
    text = request["arguments"]["text"]
    print(json.dumps({{"result": {{"result": text.upper()}}}}))


if __name__ == "__main__":
    main()
'''

_TEST_PYTHON = """from {module} import run


def test_run_uppercases() -> None:
    assert run({{"text": "hi"}}, None) == {{"result": "HI"}}
"""

_TEST_SUBPROCESS = """import json
import subprocess
import sys
from pathlib import Path


def test_worker_uppercases() -> None:
    here = Path(__file__).parent
    out = subprocess.run([sys.executable, str(here / "worker.py")], check=True,
                         input=json.dumps({{"arguments": {{"text": "hi"}}, "context": {{}}}}),
                         capture_output=True, text=True).stdout
    assert json.loads(out.splitlines()[-1]) == {{"result": {{"result": "HI"}}}}
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "scaffold", help="create a new worker directory (record, code, test, rule snippet)"
    )
    parser.add_argument("name", help="directory and tool name, e.g. shouter")
    parser.add_argument("--capability", required=True, metavar="CAP", help="e.g. cap.text.shout")
    parser.add_argument("--runner", choices=["python", "subprocess"], default="python")
    parser.add_argument(
        "--namespace",
        help="worker id namespace (default: the one the hall's attestation key may sign, "
        "else org.example)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="parent directory (default: the hall's workers/)"
    )
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def _signable_namespace(hall: Path) -> str:
    """A namespace the hall's own attestation key (``pyhall init`` makes it) may sign,
    trusted and valid now, so that a scaffolded worker can be signed as it is;
    ``org.example`` when there is none."""
    from datetime import UTC, datetime

    from ..layout import HallLayout
    from ..signing import Keyring, SigningKey

    layout = HallLayout.for_hall(hall)
    with contextlib.suppress(ConfigError):  # `pyhall validate` reports a bad key or keyring
        own = SigningKey.load(layout.attestation_key).key_id
        trusted = Keyring.load(layout.trusted_keys).get(own)
        if trusted and "attestation" in trusted.purposes and trusted.valid_at(datetime.now(UTC)):
            names = sorted(n for n in trusted.namespaces if is_worker_id(f"{n}.x"))
            if names:
                return names[0]
    return "org.example"


def run(args: argparse.Namespace) -> int:
    hall = hall_dir(args)
    if not args.out and hall.resolve() == bundled_demo_hall().resolve():
        # The bundled hall is the package's own (its key discarded): nothing there can
        # sign the new worker, and a checkout would gain an untracked directory.
        raise CommandFailed(
            "name the hall to scaffold into: --hall DIR (or PYHALL_HALL); `pyhall init DIR` "
            "makes one, with a key that can sign the new worker",
            EXIT_USAGE,
        )
    if args.namespace is None:
        args.namespace = _signable_namespace(hall)
    if not _NAME.match(args.name):
        raise CommandFailed("NAME must be lowercase letters, digits and '-'", EXIT_USAGE)
    if not _CAP.match(args.capability):
        raise CommandFailed("--capability must look like cap.<area>.<verb>", EXIT_USAGE)
    if not is_worker_id(f"{args.namespace}.{args.name}"):
        raise CommandFailed(
            f"--namespace {args.namespace!r}: the worker id {args.namespace}.{args.name} must be "
            "two to four dot-separated parts of lowercase letters, digits and '-'",
            EXIT_USAGE,
        )
    parent = Path(args.out) if args.out else hall / "workers"
    target = parent / args.name
    if target.exists():
        raise CommandFailed(f"{target} already exists; pick another name", EXIT_USAGE)
    module = args.name.replace("-", "_")
    area = args.capability.split(".")[1]
    species = f"wrk.{area}.{args.name}"
    tool = args.name.replace("-", "_")
    title = args.name.replace("-", " ").capitalize()
    runner = (
        {"kind": "python", "entry": f"{module}:run"}
        if args.runner == "python"
        else {"kind": "subprocess", "argv": ["{python}", "worker.py"]}
    )
    record = {
        "worker_id": f"{args.namespace}.{args.name}",
        "worker_species_id": species,
        "version": "0.1.0",
        "capabilities": [args.capability],
        "risk_tier": "low",
        "required_controls": ["ctrl.obs.audit-log-append-only"],
        "currently_implements": ["ctrl.obs.audit-log-append-only"],
        "allowed_environments": ["dev", "stage"],
        "blast_radius": {
            "data": 0,
            "network": 0,
            "financial": 0,
            "time": 0,
            "reversibility": "reversible",
        },
        "privilege_envelope": {
            "secrets_access": [],
            "network_egress": "none",
            "filesystem_writes": [],
            "tools": [],
        },
        "data_label": "PUBLIC",
        "tool": {
            "name": tool,
            "title": title,
            "description": f"{title}: uppercase a text.",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "additionalProperties": False,
            },
            "output_schema": {
                "type": "object",
                "properties": {"result": {"type": "string"}},
                "required": ["result"],
            },
            "annotations": {"readOnlyHint": True, "destructiveHint": False},
        },
        "runner": runner,
        "timeout_s": 10,
    }
    rule = {
        "rules": [
            {
                "rule_id": f"rr.{args.name}",
                "match": {"capability_id": args.capability, "env": {"in": ["dev", "stage"]}},
                "decision": {
                    "candidate_workers_ranked": [{"worker_species_id": species}],
                    "required_controls_suggested": ["ctrl.obs.audit-log-append-only"],
                },
            }
        ]
    }
    policy = {
        "policies": [
            {
                "id": f"pol.{args.name}",
                "effect": "allow",
                "description": f"{title} may be called.",
                "when": {"worker_id": record["worker_id"], "tool": tool},
            }
        ]
    }
    target.mkdir(parents=True)
    (target / "worker.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    if args.runner == "python":
        (target / f"{module}.py").write_text(_PYTHON_CODE.format(title=title, module=module))
        (target / f"test_{module}.py").write_text(_TEST_PYTHON.format(module=module))
    else:
        (target / "worker.py").write_text(_SUBPROCESS_CODE.format(title=title))
        (target / "test_worker.py").write_text(_TEST_SUBPROCESS.format())
    (target / "rule-snippet.yaml").write_text(
        "# Add this rule to the hall's rules/ and this policy to policies/:\n"
        + yaml.safe_dump(rule, sort_keys=False)
        + yaml.safe_dump(policy, sort_keys=False)
    )
    files = sorted(p.name for p in target.iterdir())
    emit(
        args,
        {"created": str(target), "files": files, "worker_id": record["worker_id"], "tool": tool},
        f"created {target}: {', '.join(files)}\nnext: add rule-snippet.yaml's rule and "
        "policy to the hall, sign the package (pyhall attest sign), then `pyhall validate`.",
    )
    return 0
