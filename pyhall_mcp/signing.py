"""Ed25519 keys, DSSE envelopes and the keyring of trusted public keys.

One crypto stack serves receipts, worker attestation and tenant credentials:
every signature is Ed25519 over the DSSE pre-authentication encoding (PAE), so
any signed payload exports as a standard DSSE envelope without re-signing.
Private keys are written owner-only and never printed, logged or serialised
anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._yaml import load_document
from .errors import SigningError

__all__ = [
    "Keyring",
    "Purpose",
    "SigningKey",
    "TrustedKey",
    "b64decode",
    "b64encode",
    "key_id_for",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

Purpose = Literal["receipts", "attestation", "credentials"]


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not; a bad value is a ValueError."""
    if not isinstance(text, str):
        raise ValueError("base64 value must be a string")
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id_for(public_raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:16]


class SigningKey:
    """An Ed25519 private key with its key id. ``repr`` never shows the key."""

    __slots__ = ("_private", "key_id", "public_raw")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id_for(self.public_raw)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_b64(self) -> str:
        return b64encode(self.public_raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def trusted(self, purposes: Iterable[Purpose], **fields: Any) -> TrustedKey:
        """This key's public half as a keyring entry."""
        return TrustedKey(
            key_id=self.key_id, public_key=self.public_key_b64, purposes=list(purposes), **fields
        )

    # -- files ---------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the key as PEM (PKCS#8), owner-only; refuses to overwrite."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SigningError(
                "a key already exists here", file=str(path), fix="remove it first or pick a path"
            ) from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise SigningError(
                f"cannot read signing key: {exc.strerror}",
                file=str(path),
                fix="run `pyhall init` or `pyhall attest keygen` to create one",
            ) from None
        if mode & 0o077:
            raise SigningError(
                "signing key is readable by other users",
                file=str(path),
                fix=f"chmod 600 {path}",
            )
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise SigningError("not a PEM private key", file=str(path)) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningError("not an Ed25519 key", file=str(path), fix="use an Ed25519 key")
        return cls(private)

    @classmethod
    def load_or_create(cls, path: str | Path) -> tuple[SigningKey, bool]:
        """Load the key at ``path``, creating it first if absent. Returns (key, created)."""
        path = Path(path)
        if path.exists():
            return cls.load(path), False
        key = cls.generate()
        key.save(path)
        return key, True


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class TrustedKey(BaseModel):
    """A public key the hall trusts, for some purposes, within a validity window."""

    model_config = ConfigDict(extra="forbid")

    key_id: str
    public_key: str
    purposes: list[Purpose] = Field(min_length=1)
    #: For attestation: worker-id namespaces (``org.acme``, ``x.alice``) this key may sign.
    namespaces: list[str] = Field(default_factory=list)
    not_before: str | None = None
    not_after: str | None = None
    revoked: bool = Field(default=False, strict=True)  # `yes` is not a revocation
    revoked_at: str | None = None
    note: str | None = None

    def public(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(b64decode(self.public_key))

    def valid_at(self, when: datetime) -> bool:
        start, end = _parse_time(self.not_before), _parse_time(self.not_after)
        revoked = _parse_time(self.revoked_at)
        if self.revoked and revoked is None:
            return False
        if revoked is not None and when >= revoked:
            return False
        return (start is None or when >= start) and (end is None or when < end)

    def may_sign_namespace(self, worker_id: str) -> bool:
        return any(worker_id == ns or worker_id.startswith(ns + ".") for ns in self.namespaces)


class Keyring:
    """Trusted public keys, looked up by key id."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self):
        return iter(self._keys.values())

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def add(self, key: TrustedKey) -> None:
        try:
            raw = b64decode(key.public_key)
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise SigningError(
                "public_key is not a base64 raw Ed25519 key",
                location=f"key {key.key_id}",
                fix="paste the 32-byte key in base64",
            ) from None
        if key_id_for(raw) != key.key_id:
            raise SigningError(
                "key_id does not match public_key",
                location=f"key {key.key_id}",
                fix=f"set key_id to {key_id_for(raw)}",
            )
        self._keys[key.key_id] = key

    def get(self, key_id: str) -> TrustedKey | None:
        return self._keys.get(key_id)

    def merged(self, other: Keyring) -> Keyring:
        return Keyring([*self, *other])

    def verify(
        self,
        key_id: str,
        message: bytes,
        signature: bytes,
        *,
        purpose: Purpose,
        when: datetime | None = None,
        namespace_of: str | None = None,
    ) -> TrustedKey:
        """Verify a signature; raise ``SigningError`` saying why it fails."""
        key = self._keys.get(key_id)
        if key is None:
            raise SigningError(f"key {key_id} is not in the keyring", fix="trust the key first")
        if purpose not in key.purposes:
            raise SigningError(f"key {key_id} is not trusted for {purpose}")
        if not key.valid_at(when or datetime.now(UTC)):
            raise SigningError(f"key {key_id} is revoked or outside its validity window")
        if namespace_of is not None and not key.may_sign_namespace(namespace_of):
            raise SigningError(f"key {key_id} may not sign for {namespace_of}")
        try:
            key.public().verify(signature, message)
        except InvalidSignature:
            raise SigningError("signature does not verify") from None
        return key

    # -- files ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, missing_ok: bool = True) -> Keyring:
        """Load ``{keys: [TrustedKey, ...]}`` from YAML or JSON."""
        path = Path(path)
        if not path.exists():
            if missing_ok:
                return cls()
            raise SigningError("keyring file not found", file=str(path))
        doc = load_document(path) or {}
        fix = "see docs/reference.md (keys)"
        if not isinstance(doc, dict) or not isinstance(doc.get("keys", []), list):
            raise SigningError("expected a mapping with a `keys` list", file=str(path), fix=fix)
        if unknown := sorted(set(doc) - {"keys"}):
            raise SigningError(
                f"unknown field(s) {unknown}", file=str(path), location=unknown[0], fix=fix
            )
        ring = cls()
        for index, entry in enumerate(doc.get("keys", [])):
            try:
                key = TrustedKey.model_validate(entry)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise SigningError(
                    first["msg"], file=str(path), location=f"keys[{index}].{where}", fix=fix
                ) from None
            if key.key_id in ring:
                # Two entries for one key: a later, unrevoked copy must not undo a revocation.
                raise SigningError(
                    f"key {key.key_id} is listed twice",
                    file=str(path),
                    location=f"keys[{index}]",
                    fix="keep one entry per key_id (with its revocation, if any)",
                )
            try:
                ring.add(key)
            except SigningError as exc:
                raise SigningError(
                    exc.message, file=str(path), location=f"keys[{index}]", fix=exc.fix
                ) from None
        return ring

    def dump(self) -> dict[str, Any]:
        return {"keys": [k.model_dump(exclude_none=True) for k in self]}

    def save(self, path: str | Path) -> None:
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(self.dump(), sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)


def sign_envelope(key: SigningKey, payload_type: str, payload: bytes) -> dict[str, Any]:
    """A DSSE envelope over ``payload``, signed by ``key``."""
    return {
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [
            {"keyid": key.key_id, "sig": b64encode(key.sign(pae(payload_type, payload)))}
        ],
    }


def verify_envelope(
    envelope: Any,
    keyring: Keyring,
    *,
    purpose: Purpose,
    payload_type: str | None = None,
    when: datetime | None = None,
    namespace_of: str | None = None,
) -> tuple[bytes, TrustedKey]:
    """Verify a DSSE envelope; return (payload, the key that verified it).

    One valid signature by a trusted key suffices; ``SigningError`` otherwise.
    """
    if not isinstance(envelope, dict):
        raise SigningError("envelope is not a JSON object")
    kind = envelope.get("payloadType")
    if not isinstance(kind, str) or (payload_type is not None and kind != payload_type):
        raise SigningError(f"unexpected payloadType {kind!r}")
    try:
        payload = b64decode(envelope.get("payload", ""))
    except ValueError:
        raise SigningError("payload is not base64") from None
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SigningError("envelope has no signatures")
    message = pae(kind, payload)
    last: SigningError | None = None
    for entry in signatures:
        try:
            sig = b64decode(entry["sig"])
            key = keyring.verify(
                entry["keyid"], message, sig, purpose=purpose, when=when, namespace_of=namespace_of
            )
            return payload, key
        except (KeyError, TypeError, ValueError):
            last = SigningError("malformed signature entry")
        except SigningError as exc:
            last = exc
    assert last is not None
    raise last
