"""Strict loading of configuration documents (YAML and JSON).

``yaml.safe_load`` blocks ``!!python`` tags but not alias bombs, duplicate keys
(the last silently wins) or YAML 1.1 surprises. This loader refuses anchors and
aliases, duplicate and non-string keys, and oversize files, and reports every
problem with the file and line.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from .errors import ConfigError

MAX_DOCUMENT_BYTES = 1 << 20  # 1 MiB: far above any real rule or record file
MAX_DEPTH = 64  # of nested mappings and lists; real configuration stays under ten


# libyaml parses about eight times faster than pure Python; both are strict here.
_Base: Any = (
    getattr(yaml, "CSafeLoader", yaml.SafeLoader) if yaml.__with_libyaml__ else (yaml.SafeLoader)
)


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """A safe loader without duplicate, merge or non-string keys, unknown tags or
    non-JSON types. Anchors and aliases are refused by ``_refuse_anchors`` first."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not allowed", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"keys must be strings, got {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _reject_unknown_tag(loader: yaml.SafeLoader, suffix: str, node: Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"tag {node.tag} is not allowed", node.start_mark
    )


# YAML 1.2 booleans only: "NO", "off" and "yes" stay strings instead of turning
# into booleans behind the author's back; an unquoted date stays a string too.
_NOT_IMPLICIT = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NOT_IMPLICIT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_StrictLoader.add_multi_constructor("!", _reject_unknown_tag)
_StrictLoader.add_multi_constructor("tag:yaml.org,2002:python", _reject_unknown_tag)
# Only JSON values: sets, bytes, dates and ordered pairs would fail far from the file.
for _kind in ("set", "binary", "timestamp", "omap", "pairs"):
    _StrictLoader.add_constructor(
        f"tag:yaml.org,2002:{_kind}", lambda loader, node: _reject_unknown_tag(loader, "", node)
    )


def _check_events(text: str) -> None:
    """Refuse, at the first offending event, what the loader must never build.

    Anchors and aliases make alias bombs possible. Deep nesting would recurse
    through the composer (libyaml's crashes the process near 30,000 levels, the
    pure-Python one raises RecursionError); the parser that yields these events is
    iterative, so walking them is safe at any depth.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_Base):
        kind = type(event)
        if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.constructor.ConstructorError(
                    None, None, f"nests deeper than {MAX_DEPTH} levels", event.start_mark
                )
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            depth -= 1
        elif kind is yaml.AliasEvent:
            raise yaml.constructor.ConstructorError(
                None, None, "aliases are not allowed", event.start_mark
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"anchors are not allowed (&{anchor})", event.start_mark
            )


def loads_yaml(text: str, *, source: str = "<string>") -> Any:
    """Parse YAML text strictly; a problem is a ``ConfigError`` naming the line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"document is larger than {MAX_DOCUMENT_BYTES} bytes",
            file=source,
            fix="split it into several files",
        )
    try:
        _check_events(text)
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            problem, file=source, location=line, fix="correct the YAML at that line"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=source) from None


def loads_json(text: str, *, source: str = "<string>") -> Any:
    """Parse JSON text; duplicate keys are refused like in YAML."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes", file=source)
    try:
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            exc.msg, file=source, location=f"line {exc.lineno}", fix="correct the JSON"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(str(exc) or "document nests too deeply", file=source) from None
    if _depth(value) > MAX_DEPTH:
        raise ConfigError(f"nests deeper than {MAX_DEPTH} levels", file=source)
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (json.loads bounds it anyway)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def load_document(path: str | Path) -> Any:
    """Load a ``.json``, ``.yaml`` or ``.yml`` file strictly."""
    path = Path(path)
    source = str(path)
    try:
        data = read_regular_file(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read file: {exc.strerror}", file=source, fix="check the path"
        ) from None
    if data is None:
        raise ConfigError(
            "not a regular file (a device, pipe or directory)",
            file=source,
            fix="replace it with a plain file",
        )
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"file is larger than {MAX_DOCUMENT_BYTES} bytes", file=source, fix="split it"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("file is not UTF-8 text", file=source) from None
    if path.suffix.lower() == ".json":
        return loads_json(text, source=source)
    return loads_yaml(text, source=source)


def read_regular_file(path: Path) -> bytes | None:
    """At most one byte past the size cap of a regular file; None for anything else.

    Opened non-blocking (a FIFO would block an open or a read forever) and checked
    on the open descriptor (a symlink to /dev/zero reports size 0 but never ends).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(MAX_DOCUMENT_BYTES + 1)
    finally:
        os.close(fd)
