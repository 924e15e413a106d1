"""``pyhall search`` and ``pyhall explain``: the WCP taxonomy catalog shipped in the package."""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path
from typing import Any

from ._common import EXIT_NO, CommandFailed, add_hall_arg, add_json_arg, emit, hall_dir

_CATALOG = Path(__file__).resolve().parent.parent / "data" / "catalog.yaml"


@cache
def catalog() -> tuple[dict[str, Any], ...]:
    from .._yaml import load_document

    return tuple(load_document(_CATALOG)["entries"])


def register(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser("search", help="search the WCP taxonomy catalog")
    search.add_argument("query", nargs="+")
    search.add_argument(
        "--kind", choices=["capability", "species", "control", "profile", "policy", "event"]
    )
    add_json_arg(search)
    search.set_defaults(func=run_search)
    explain = commands.add_parser(
        "explain", help="explain a WCP id, and which enrolled workers serve it"
    )
    explain.add_argument("id")
    add_hall_arg(explain)
    add_json_arg(explain)
    explain.set_defaults(func=run_explain)


def run_search(args: argparse.Namespace) -> int:
    words = [w.lower() for w in args.query]
    hits = [
        e
        for e in catalog()
        if (args.kind is None or e["kind"] == args.kind)
        and all(w in f"{e['id']} {e['title']} {e['description']}".lower() for w in words)
    ]
    emit(
        args,
        {"query": " ".join(args.query), "results": hits},
        "\n".join(f"{e['id']:<42} {e['kind']:<10} {e['title']}" for e in hits) or "no matches",
    )
    return 0 if hits else EXIT_NO


def run_explain(args: argparse.Namespace) -> int:
    from ..registry import Registry
    from ..rules import canonical_control

    wanted = args.id.strip()
    entry = next(
        (
            e
            for e in catalog()
            if e["id"] == wanted or canonical_control(e["id"]) == canonical_control(wanted)
        ),
        None,
    )
    workers_dir = hall_dir(args) / "workers"
    registry = Registry.load(workers_dir) if workers_dir.is_dir() else Registry()
    serving = [
        r
        for r in registry.records
        if wanted in r.capabilities
        or r.worker_species_id == wanted
        or canonical_control(wanted) in r.controls
    ]
    if entry is None and not serving:
        raise CommandFailed(f"unknown id {wanted!r}: try `pyhall search WORD`", EXIT_NO)
    data = {
        "entry": entry,
        "enrolled_workers": [
            {"worker_id": r.worker_id, "tool": r.tool.name if r.tool else None} for r in serving
        ],
    }
    lines = []
    if entry:
        lines += [f"{entry['id']} ({entry['kind']}): {entry['title']}", f"  {entry['description']}"]
    else:
        lines.append(f"{wanted}: not in the catalog (an id of this hall)")
    lines.append(
        "enrolled workers: "
        + (
            ", ".join(f"{w['worker_id']} (tool {w['tool']})" for w in data["enrolled_workers"])
            or "none"
        )
    )
    emit(args, data, "\n".join(lines))
    return 0
