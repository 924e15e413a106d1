"""JSON Schema for tool arguments and results: checked at enrollment, compiled once.

Built on ``jsonschema-rs`` (Rust): it imports in a fraction of the time the
pure-Python ``jsonschema`` takes, which a gateway that MCP hosts spawn at
their own start pays on every launch, and checks a small object in well under
a microsecond, which every call pays twice (arguments, then result).

The draft is the schema's ``$schema`` when it names a standard draft, else
2020-12 (MCP's default). Nothing is ever fetched: a ``$schema`` naming an
unknown meta-schema, or a ``$ref`` outside the schema, makes the schema
invalid, so the worker is quarantined at load instead of failing (or
reaching the network) on a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs

__all__ = ["SchemaValidator", "check_schema"]

#: The meta-schemas ``jsonschema-rs`` knows: a ``$schema`` naming any other is refused.
_DRAFTS = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema",
        "http://json-schema.org/draft-06/schema",
        "http://json-schema.org/draft-04/schema",
    }
)
_MAX_MESSAGE = 200


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ValueError naming what is wrong if ``schema`` is not a usable JSON Schema."""
    SchemaValidator(schema)


class SchemaValidator:
    """One compiled schema: ``is_valid`` for the fast path, ``errors`` to explain a failure."""

    __slots__ = ("_validator", "is_valid")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        declared = schema.get("$schema")
        if declared is not None and (
            not isinstance(declared, str) or declared.rstrip("#") not in _DRAFTS
        ):
            raise ValueError(
                f"$schema {declared!r} is not a standard draft (2020-12 is the default)"
            )
        plain = dict(schema)
        try:
            jsonschema_rs.meta.validate(plain)
            self._validator = jsonschema_rs.validator_for(plain, offline=True)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
            raise ValueError(_first_line(exc)) from None
        self.is_valid = self._validator.is_valid

    def errors(self, instance: Any, *, limit: int) -> list[str]:
        """Up to ``limit`` messages, each led by the path of the value it is about."""
        found = []
        for error in self._validator.iter_errors(instance):
            where = "/".join(str(p) for p in error.instance_path) or "(arguments)"
            found.append(f"{where}: {error.message[:_MAX_MESSAGE]}")
            if len(found) >= limit:
                break
        return sorted(found)


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0][:_MAX_MESSAGE]
