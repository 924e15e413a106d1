"""Tenant credentials: a signed statement that a tenant id is a signatory.

A credential is ``<payload>.<signature>``, both base64url: the payload is the
canonical JSON ``{"expires_at", "issued_at", "key_id", "tenant_id", "type"}``
(times as integer Unix seconds) and the signature is Ed25519 over the DSSE
pre-authentication encoding of that payload, by an issuer key the hall trusts
for ``credentials``. The operator passes it at launch; the model never sees it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import canonical_json
from .errors import PyhallError
from .signing import SigningKey, b64decode, pae

__all__ = [
    "CREDENTIAL_TYPE",
    "CredentialError",
    "TenantCredential",
    "issue_credential",
    "verify_credential",
]

CREDENTIAL_TYPE = "application/vnd.pyhall.tenant-credential+json"
_MAX_TOKEN = 4096


class CredentialError(PyhallError):
    """A tenant credential is missing, malformed, forged, expired or for another tenant."""


@dataclass(frozen=True)
class TenantCredential:
    tenant_id: str
    key_id: str
    issued_at: int
    expires_at: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def issue_credential(
    key: SigningKey, tenant_id: str, *, ttl_seconds: int, now: int | None = None
) -> str:
    """Issue a credential binding ``tenant_id`` for ``ttl_seconds``."""
    if not tenant_id.strip():
        raise CredentialError("tenant_id must not be blank")
    if ttl_seconds <= 0:
        raise CredentialError("ttl must be positive")
    issued = int(time.time()) if now is None else now
    payload = canonical_json(
        {
            "expires_at": issued + ttl_seconds,
            "issued_at": issued,
            "key_id": key.key_id,
            "tenant_id": tenant_id,
            "type": CREDENTIAL_TYPE,
        }
    )
    return f"{_b64url(payload)}.{_b64url(key.sign(pae(CREDENTIAL_TYPE, payload)))}"


def verify_credential(
    token: str | None,
    *,
    tenant_id: str,
    issuers: Mapping[str, str],
    now: int | None = None,
) -> TenantCredential:
    """Verify ``token`` for ``tenant_id`` against trusted issuer keys (key id -> base64 key).

    Raises ``CredentialError`` saying why it does not hold; never returns a
    credential that fails any check.
    """
    if not token:
        raise CredentialError("no tenant credential was presented")
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise CredentialError("credential is malformed")
    body_b64, sig_b64 = token.split(".")
    try:
        payload = b64decode(body_b64)
        signature = b64decode(sig_b64)
        claims = json.loads(payload)
    except ValueError:
        raise CredentialError("credential is malformed") from None
    if not isinstance(claims, dict) or claims.get("type") != CREDENTIAL_TYPE:
        raise CredentialError("credential is malformed")
    key_id = claims.get("key_id")
    public_b64 = issuers.get(key_id) if isinstance(key_id, str) else None
    if public_b64 is None:
        raise CredentialError("credential was issued by an untrusted key")
    try:
        Ed25519PublicKey.from_public_bytes(b64decode(public_b64)).verify(
            signature, pae(CREDENTIAL_TYPE, payload)
        )
    except (InvalidSignature, ValueError):
        raise CredentialError("credential signature does not verify") from None
    issued, expires = claims.get("issued_at"), claims.get("expires_at")
    if type(issued) is not int or type(expires) is not int:
        raise CredentialError("credential is malformed")
    if claims.get("tenant_id") != tenant_id:
        raise CredentialError("credential was issued to another tenant")
    current = int(time.time()) if now is None else now
    if current >= expires:
        raise CredentialError("credential has expired")
    if current < issued - 300:  # five minutes of clock skew
        raise CredentialError("credential is not yet valid")
    return TenantCredential(
        tenant_id=tenant_id, key_id=key_id, issued_at=issued, expires_at=expires
    )
