"""Ed25519 keys on disk (owner-only, never overwritten), the keyring of trusted keys, and
DSSE envelopes that verify only for the right purpose, namespace and validity window."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pyhall_mcp.errors import SigningError
from pyhall_mcp.signing import (
    Keyring,
    SigningKey,
    TrustedKey,
    b64decode,
    key_id_for,
    pae,
    sign_envelope,
    verify_envelope,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


# -- keys on disk -------------------------------------------------------------------------


def test_save_is_owner_only_and_load_round_trips(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "keys" / "signing.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SigningKey.load(path)
    assert loaded.key_id == key.key_id and loaded.public_raw == key.public_raw
    assert loaded.sign(b"m") == key.sign(b"m")  # Ed25519 is deterministic


def test_save_refuses_to_overwrite(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "signing.key"
    key.save(path)
    before = path.read_bytes()
    with pytest.raises(SigningError) as info:
        SigningKey.generate().save(path)
    assert info.value.file == str(path) and "already exists" in info.value.message
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_load_refuses_keys_readable_by_others(tmp_path: Path, key: SigningKey, mode: int) -> None:
    path = tmp_path / "signing.key"
    key.save(path)
    os.chmod(path, mode)
    with pytest.raises(SigningError) as info:
        SigningKey.load(path)
    assert "readable by other users" in info.value.message
    assert info.value.fix == f"chmod 600 {path}"


def test_load_refuses_missing_non_pem_and_non_ed25519_keys(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="cannot read signing key"):
        SigningKey.load(tmp_path / "absent.key")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(SigningError, match="not a PEM private key"):
        SigningKey.load(junk)
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_key.chmod(0o600)
    with pytest.raises(SigningError, match="not an Ed25519 key"):
        SigningKey.load(ec_key)


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "state" / "signing.key"
    first, created = SigningKey.load_or_create(path)
    assert created is True and stat.S_IMODE(path.stat().st_mode) == 0o600
    second, created = SigningKey.load_or_create(path)
    assert created is False and second.key_id == first.key_id


def test_repr_never_shows_the_private_key(key: SigningKey) -> None:
    private = key._private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = repr(key)
    assert key.key_id in text
    for encoded in (private.hex(), base64.b64encode(private).decode()):
        assert encoded not in text


def test_key_id_is_derived_from_the_public_key(key: SigningKey) -> None:
    assert key.key_id == "ed25519:" + hashlib.sha256(key.public_raw).hexdigest()[:16]
    assert key_id_for(key.public_raw) == key.key_id


def test_pae_matches_the_dsse_specification() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_b64decode_accepts_both_alphabets_with_or_without_padding() -> None:
    data = bytes(range(250, 256)) + b"\xfb\xff"
    for text in (
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ):
        assert b64decode(text) == data
    with pytest.raises(ValueError):
        b64decode("not base64!")
    with pytest.raises(ValueError):
        b64decode(5)  # type: ignore[arg-type]


# -- the keyring --------------------------------------------------------------------------


def test_keyring_refuses_a_key_id_that_does_not_match_the_key(key: SigningKey) -> None:
    other = SigningKey.generate()
    with pytest.raises(SigningError) as info:
        Keyring(
            [TrustedKey(key_id=other.key_id, public_key=key.public_key_b64, purposes=["receipts"])]
        )
    assert "key_id does not match public_key" in info.value.message
    assert key.key_id in (info.value.fix or "")
    with pytest.raises(SigningError, match="not a base64 raw Ed25519 key"):
        Keyring([TrustedKey(key_id="ed25519:x", public_key="AAAA", purposes=["receipts"])])


def test_keyring_file_with_mismatched_key_id_names_file_and_entry(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "trusted.yaml"
    good = SigningKey.generate()
    entry = {"key_id": good.key_id, "public_key": good.public_key_b64, "purposes": ["receipts"]}
    path.write_text(json.dumps({"keys": [entry, entry | {"public_key": key.public_key_b64}]}))
    with pytest.raises(SigningError) as info:
        Keyring.load(path)
    assert info.value.file == str(path) and info.value.location == "keys[1]"


def test_keyring_file_with_a_bad_entry_names_the_field(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "trusted.yaml"
    entry = {"key_id": key.key_id, "public_key": key.public_key_b64, "purposes": ["everything"]}
    path.write_text(json.dumps({"keys": [entry]}))
    with pytest.raises(SigningError) as info:
        Keyring.load(path)
    assert info.value.location == "keys[0].purposes.0"


def test_keyring_load_missing_and_save_round_trip(tmp_path: Path, key: SigningKey) -> None:
    assert len(Keyring.load(tmp_path / "none.yaml")) == 0
    with pytest.raises(SigningError, match="keyring file not found"):
        Keyring.load(tmp_path / "none.yaml", missing_ok=False)
    ring = Keyring([key.trusted(["receipts", "attestation"], namespaces=["org.acme"])])
    ring.save(tmp_path / "keys" / "trusted.yaml")
    again = Keyring.load(tmp_path / "keys" / "trusted.yaml")
    assert key.key_id in again
    assert again.get(key.key_id) == ring.get(key.key_id)


def _verify(ring: Keyring, key: SigningKey, **kw: object) -> TrustedKey:
    message = b"receipt bytes"
    return ring.verify(key.key_id, message, key.sign(message), when=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "kw", "why"),
    [
        ({}, {"purpose": "credentials"}, "not trusted for credentials"),
        ({"revoked": True}, {"purpose": "receipts"}, "revoked or outside"),
        ({"revoked_at": _iso(NOW - timedelta(days=1))}, {"purpose": "receipts"}, "revoked"),
        ({"not_after": _iso(NOW - timedelta(seconds=1))}, {"purpose": "receipts"}, "outside"),
        ({"not_before": _iso(NOW + timedelta(days=1))}, {"purpose": "receipts"}, "outside"),
        (
            {"namespaces": ["org.acme"]},
            {"purpose": "receipts", "namespace_of": "org.acmeevil.worker"},
            "may not sign for org.acmeevil.worker",
        ),
    ],
    ids=["purpose", "revoked", "revoked-at", "expired", "not-yet", "namespace"],
)
def test_keyring_verify_refusals(key: SigningKey, fields: dict, kw: dict, why: str) -> None:
    ring = Keyring([key.trusted(["receipts"], **fields)])
    with pytest.raises(SigningError, match=why):
        _verify(ring, key, **kw)


def test_keyring_verify_accepts_within_window_and_namespace(key: SigningKey) -> None:
    ring = Keyring(
        [
            key.trusted(
                ["receipts"],
                namespaces=["org.acme"],
                not_before=_iso(NOW - timedelta(days=1)),
                not_after=_iso(NOW + timedelta(days=1)),
                revoked_at=_iso(NOW + timedelta(hours=1)),  # revoked later: still valid now
            )
        ]
    )
    assert _verify(ring, key, purpose="receipts", namespace_of="org.acme.summarizer").key_id == (
        key.key_id
    )
    assert _verify(ring, key, purpose="receipts", namespace_of="org.acme")


def test_keyring_verify_refuses_unknown_keys_and_bad_signatures(key: SigningKey) -> None:
    ring = Keyring([key.trusted(["receipts"])])
    with pytest.raises(SigningError, match="not in the keyring"):
        ring.verify("ed25519:0000", b"m", key.sign(b"m"), purpose="receipts")
    with pytest.raises(SigningError, match="signature does not verify"):
        ring.verify(key.key_id, b"m", key.sign(b"other"), purpose="receipts")


# -- DSSE envelopes -------------------------------------------------------------------------


def test_envelope_round_trip(key: SigningKey) -> None:
    envelope = sign_envelope(key, PAYLOAD_TYPE, b'{"a":1}')
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope["signatures"][0]["keyid"] == key.key_id
    ring = Keyring([key.trusted(["attestation"], namespaces=["org.acme"])])
    payload, trusted = verify_envelope(
        envelope,
        ring,
        purpose="attestation",
        payload_type=PAYLOAD_TYPE,
        when=NOW,
        namespace_of="org.acme.worker",
    )
    assert payload == b'{"a":1}' and trusted.key_id == key.key_id


@pytest.mark.parametrize(
    ("fields", "kw", "why"),
    [
        ({}, {"purpose": "receipts"}, "not trusted for receipts"),
        ({}, {"purpose": "attestation", "namespace_of": "x.mallory.worker"}, "may not sign"),
        ({"revoked": True}, {"purpose": "attestation"}, "revoked"),
        ({"not_after": _iso(NOW - timedelta(days=1))}, {"purpose": "attestation"}, "outside"),
        ({}, {"purpose": "attestation", "payload_type": "text/plain"}, "unexpected payloadType"),
    ],
    ids=["wrong-purpose", "wrong-namespace", "revoked", "expired", "wrong-type"],
)
def test_envelope_refusals(key: SigningKey, fields: dict, kw: dict, why: str) -> None:
    ring = Keyring([key.trusted(["attestation"], namespaces=["org.acme"], **fields)])
    envelope = sign_envelope(key, PAYLOAD_TYPE, b"payload")
    with pytest.raises(SigningError, match=why):
        verify_envelope(envelope, ring, when=NOW, **kw)  # type: ignore[arg-type]


def test_tampered_or_malformed_envelopes_are_refused(key: SigningKey) -> None:
    ring = Keyring([key.trusted(["attestation"])])
    envelope = sign_envelope(key, PAYLOAD_TYPE, b"payload")
    tampered = dict(envelope, payload=base64.b64encode(b"payloaD").decode())
    with pytest.raises(SigningError, match="does not verify"):
        verify_envelope(tampered, ring, purpose="attestation")
    retyped = dict(envelope, payloadType="application/other")
    with pytest.raises(SigningError, match="does not verify"):
        verify_envelope(retyped, ring, purpose="attestation")
    for bad, why in (
        ([], "not a JSON object"),
        (dict(envelope, signatures=[]), "no signatures"),
        (dict(envelope, signatures=[{"keyid": key.key_id}]), "malformed signature"),
        (dict(envelope, payload="***"), "payload is not base64"),
        (dict(envelope, payloadType=None), "unexpected payloadType"),
    ):
        with pytest.raises(SigningError, match=why):
            verify_envelope(bad, ring, purpose="attestation")


def test_one_valid_signature_among_several_suffices(key: SigningKey) -> None:
    stranger = SigningKey.generate()
    envelope = sign_envelope(key, PAYLOAD_TYPE, b"payload")
    foreign = sign_envelope(stranger, PAYLOAD_TYPE, b"payload")["signatures"][0]
    envelope["signatures"].insert(0, foreign)
    ring = Keyring([key.trusted(["attestation"])])
    assert verify_envelope(envelope, ring, purpose="attestation")[1].key_id == key.key_id
    only_foreign = dict(envelope, signatures=[foreign])
    with pytest.raises(SigningError, match="not in the keyring"):
        verify_envelope(only_foreign, ring, purpose="attestation")


def test_a_fixed_seed_gives_a_fixed_identity() -> None:
    seeded = SigningKey(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
    assert seeded.key_id == SigningKey(Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)).key_id
    assert seeded.key_id != SigningKey.generate().key_id
