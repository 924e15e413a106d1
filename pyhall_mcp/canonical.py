"""Canonical JSON (RFC 8785) and digests.

For documents without floats, ``json.dumps`` with sorted keys, no spaces and
UTF-8 output is byte-for-byte RFC 8785 (same escapes, same integer form), and
five times faster than a general JCS encoder; anything else goes through the
``rfc8785`` library. The two paths agree; a test holds them to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import rfc8785

__all__ = ["canonical_json", "digest", "is_plain_json", "sha256_hex", "sorted_json"]


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_dumps() -> Callable[[Any], str]:
    """One reusable C encoder: a third faster than ``json.dumps`` on small documents.

    No circular-reference markers: canonical JSON is only ever made of data parsed
    from JSON or built by us, and a cycle still fails (``RecursionError``).
    """
    from json import encoder

    if encoder.c_make_encoder is None:  # pragma: no cover - Pythons without _json
        return json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
        ).encode
    encode = encoder.c_make_encoder(
        None, _unserializable, encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


_dumps = _make_dumps()


def is_plain_json(value: Any) -> bool:
    """True when sorted-key ``json.dumps`` equals RFC 8785 for ``value``."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -(2**53) < value < 2**53
    if kind is dict:
        # RFC 8785 sorts keys by UTF-16 code units; Python by code points. They
        # agree unless a key holds a character outside the BMP.
        for k, v in value.items():
            if type(k) is not str or not (k.isascii() or all(ord(c) < 0x10000 for c in k)):
                return False
            kind = type(v)
            if kind is str or kind is bool or v is None:
                continue
            if not is_plain_json(v):
                return False
        return True
    if kind is list or kind is tuple:
        return all(is_plain_json(v) for v in value)
    return False


def sorted_json(value: Any) -> bytes:
    """Sorted-key compact JSON: RFC 8785 itself when ``is_plain_json(value)`` holds."""
    return _dumps(value).encode("utf-8")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical form of a JSON value, as UTF-8 bytes."""
    if is_plain_json(value):
        return sorted_json(value)
    return rfc8785.dumps(value)


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
