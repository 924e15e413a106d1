"""Tenant credentials: issued by a trusted key, bound to one tenant and a validity window;
anything forged, expired, misdirected or malformed is refused with the reason."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pyhall_mcp.canonical import canonical_json
from pyhall_mcp.credentials import (
    CREDENTIAL_TYPE,
    CredentialError,
    TenantCredential,
    issue_credential,
    verify_credential,
)
from pyhall_mcp.signing import SigningKey, pae

ISSUER = SigningKey(Ed25519PrivateKey.from_private_bytes(b"\x11" * 32))
OTHER = SigningKey(Ed25519PrivateKey.from_private_bytes(b"\x22" * 32))
ISSUERS = {ISSUER.key_id: ISSUER.public_key_b64}
T0 = 1_800_000_000


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(claims: dict, key: SigningKey = ISSUER) -> str:
    payload = json.dumps(claims).encode()
    return f"{_b64url(payload)}.{_b64url(key.sign(pae(CREDENTIAL_TYPE, payload)))}"


def _claims(**over: object) -> dict:
    return {
        "expires_at": T0 + 3600,
        "issued_at": T0,
        "key_id": ISSUER.key_id,
        "tenant_id": "acme",
        "type": CREDENTIAL_TYPE,
    } | over


def test_issue_and_verify() -> None:
    token = issue_credential(ISSUER, "acme", ttl_seconds=3600, now=T0)
    credential = verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0 + 10)
    assert credential == TenantCredential(
        tenant_id="acme", key_id=ISSUER.key_id, issued_at=T0, expires_at=T0 + 3600
    )
    body = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert body == canonical_json(_claims())  # canonical, so the signature is reproducible
    assert token == issue_credential(ISSUER, "acme", ttl_seconds=3600, now=T0)


def test_forged_payload_is_refused() -> None:
    token = issue_credential(ISSUER, "acme", ttl_seconds=3600, now=T0)
    _, signature = token.split(".")
    forged = f"{_b64url(canonical_json(_claims(tenant_id='mallory')))}.{signature}"
    with pytest.raises(CredentialError, match="signature does not verify"):
        verify_credential(forged, tenant_id="mallory", issuers=ISSUERS, now=T0)


def test_signature_by_another_key_claiming_the_trusted_key_id_is_refused() -> None:
    with pytest.raises(CredentialError, match="signature does not verify"):
        verify_credential(_signed(_claims(), key=OTHER), tenant_id="acme", issuers=ISSUERS, now=T0)


def test_key_substitution_in_the_issuer_map_is_refused() -> None:
    token = issue_credential(ISSUER, "acme", ttl_seconds=60, now=T0)
    with pytest.raises(CredentialError, match="signature does not verify"):
        verify_credential(
            token, tenant_id="acme", issuers={ISSUER.key_id: OTHER.public_key_b64}, now=T0
        )


def test_untrusted_issuer_is_refused() -> None:
    token = issue_credential(OTHER, "acme", ttl_seconds=60, now=T0)
    with pytest.raises(CredentialError, match="untrusted key"):
        verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0)
    with pytest.raises(CredentialError, match="untrusted key"):
        verify_credential(token, tenant_id="acme", issuers={}, now=T0)


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (T0 + 3600, "expired"),
        (T0 + 10**6, "expired"),
        (T0 - 301, "not yet valid"),
    ],
)
def test_validity_window(now: int, why: str) -> None:
    token = issue_credential(ISSUER, "acme", ttl_seconds=3600, now=T0)
    with pytest.raises(CredentialError, match=why):
        verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=now)


def test_clock_skew_of_five_minutes_is_tolerated() -> None:
    token = issue_credential(ISSUER, "acme", ttl_seconds=3600, now=T0)
    assert verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0 - 300)
    assert verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0 + 3599)


def test_credential_for_another_tenant_is_refused() -> None:
    token = issue_credential(ISSUER, "globex", ttl_seconds=3600, now=T0)
    with pytest.raises(CredentialError, match="another tenant"):
        verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (None, "no tenant credential"),
        ("", "no tenant credential"),
        ("abc", "malformed"),
        ("a.b.c", "malformed"),
        ("!!!.???", "malformed"),
        ("x" * 5000 + "." + "y", "malformed"),
        (f"{_b64url(b'not json')}.{_b64url(b'sig')}", "malformed"),
        (f"{_b64url(b'[1, 2]')}.{_b64url(b'sig')}", "malformed"),
        (_signed(_claims(type="application/other")), "malformed"),
        (_signed(_claims(issued_at=float(T0))), "malformed"),
        (_signed(_claims(expires_at=True)), "malformed"),
        (_signed(_claims(key_id=5)), "untrusted"),
    ],
)
def test_malformed_credentials_are_refused(token: object, why: str) -> None:
    with pytest.raises(CredentialError, match=why):
        verify_credential(token, tenant_id="acme", issuers=ISSUERS, now=T0)  # type: ignore[arg-type]


def test_hand_signed_valid_claims_verify() -> None:
    # The format is documented: a credential built to the letter by another tool verifies.
    assert verify_credential(_signed(_claims()), tenant_id="acme", issuers=ISSUERS, now=T0)


@pytest.mark.parametrize(("tenant", "ttl"), [("", 60), ("  ", 60), ("acme", 0), ("acme", -5)])
def test_issue_refuses_blank_tenant_and_non_positive_ttl(tenant: str, ttl: int) -> None:
    with pytest.raises(CredentialError):
        issue_credential(ISSUER, tenant, ttl_seconds=ttl, now=T0)
