"""License keys: the Ed25519 issuer key and the `LIC1-<payload>-<signature>` format.

Pure functions, no I/O. The byte layout is the one the published Keysat client
(`keysat-licensing-client` 0.3.x, `key.py`) parses, so every key issued here verifies
offline in a seller's software:

    LIC1-<base32(payload)>-<base32(signature)>   RFC 4648 base32, upper case, no padding
    signature: 64-byte Ed25519 over the raw payload bytes

    v2 payload (what we issue):
      [0]      version = 2
      [1]      flags (bit 0 fingerprint bound, bit 1 trial)
      [2..18]  product id, UUID bytes
      [18..34] license id, UUID bytes
      [34..42] issued_at, u64 big-endian unix seconds
      [42..50] expires_at, u64 big-endian unix seconds, 0 = perpetual
      [50..82] fingerprint hash (SHA-256 of the fingerprint string; zeros when unbound)
      [82]     number of entitlements
      [83..]   per entitlement: u8 length + UTF-8 slug

The parser also accepts the legacy fixed 74-byte v1 layout, as the client does, so a key
from an older issuer is classified correctly (it still has to carry our signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

KEY_PREFIX = "LIC1"
VERSION_V1 = 1
VERSION_V2 = 2
FLAG_FINGERPRINT_BOUND = 0b01
FLAG_TRIAL = 0b10
SIGNATURE_LEN = 64
V1_LEN = 74
V2_HEAD_LEN = 83
UNBOUND_FINGERPRINT = bytes(32)
MAX_U64 = 2**64 - 1
# A key longer than this cannot be one we issued (255 entitlements of 255 bytes is ~105 KB of
# payload, but no policy comes near that); refusing early keeps hostile input cheap to reject.
MAX_KEY_CHARS = 4096


class KeyFormatError(ValueError):
    """The string is not a well-formed LIC1 key (the client's `bad_format`)."""


class KeySignatureError(ValueError):
    """The key is well-formed but its signature is not ours (the client's `bad_signature`)."""


@dataclass(frozen=True, slots=True)
class KeyPayload:
    """What a key says about itself. Authentic only once its signature has been checked."""

    product_id: uuid.UUID
    license_id: uuid.UUID
    issued_at: int
    expires_at: int = 0
    fingerprint_hash: bytes = UNBOUND_FINGERPRINT
    flags: int = 0
    entitlements: tuple[str, ...] = ()
    version: int = VERSION_V2

    @property
    def is_fingerprint_bound(self) -> bool:
        return bool(self.flags & FLAG_FINGERPRINT_BOUND)

    @property
    def is_trial(self) -> bool:
        return bool(self.flags & FLAG_TRIAL)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    payload: KeyPayload
    payload_bytes: bytes
    signature: bytes


class IssuerKey:
    """The server's Ed25519 signing key. Its private half never leaves this object except
    through `private_bytes()`, which only the store calls to persist it."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public: Ed25519PublicKey = private.public_key()

    @classmethod
    def generate(cls) -> IssuerKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> IssuerKey:
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_pem(cls, pem: str) -> IssuerKey:
        """A PKCS#8 PEM Ed25519 private key (Keysat's import form), or ValueError saying why."""
        try:
            private = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ValueError(f"could not read an unencrypted PEM private key: {e}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"the key is {type(private).__name__}, not an Ed25519 private key")
        return cls(private)

    def private_bytes(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_bytes(self) -> bytes:
        return public_raw(self.public)

    def public_pem(self) -> str:
        return public_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"IssuerKey(public={self.public_bytes().hex()[:16]}...)"


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint_hash(fingerprint: str) -> bytes:
    """SHA-256 of the fingerprint string as the client sends it (the same hash the client's
    `hash_fingerprint` computes, as raw bytes)."""
    return hashlib.sha256(fingerprint.encode("utf-8")).digest()


def encode_payload(payload: KeyPayload) -> bytes:
    """The v2 payload bytes. Raises ValueError on a field that cannot be encoded."""
    for name in ("issued_at", "expires_at"):
        value = getattr(payload, name)
        if not 0 <= value <= MAX_U64:
            raise ValueError(f"{name} must be between 0 and 2^64-1, got {value}")
    if len(payload.fingerprint_hash) != 32:
        raise ValueError("fingerprint_hash must be 32 bytes")
    if not 0 <= payload.flags <= 255:
        raise ValueError("flags must fit in one byte")
    if len(payload.entitlements) > 255:
        raise ValueError("a key holds at most 255 entitlements")
    parts = [
        bytes((VERSION_V2, payload.flags)),
        payload.product_id.bytes,
        payload.license_id.bytes,
        payload.issued_at.to_bytes(8, "big"),
        payload.expires_at.to_bytes(8, "big"),
        payload.fingerprint_hash,
        bytes((len(payload.entitlements),)),
    ]
    for slug in payload.entitlements:
        raw = slug.encode("utf-8")
        if not 0 < len(raw) <= 255:
            raise ValueError(f"entitlement {slug!r} must be 1..255 bytes of UTF-8")
        parts.append(bytes((len(raw),)) + raw)
    return b"".join(parts)


def b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    return base64.b32decode(padded)


def issue_key(issuer: IssuerKey, payload: KeyPayload) -> str:
    """Sign the payload and format it as a LIC1 key."""
    payload_bytes = encode_payload(payload)
    signature = issuer.sign(payload_bytes)
    return f"{KEY_PREFIX}-{b32encode(payload_bytes)}-{b32encode(signature)}"


def parse_key(key: object) -> ParsedKey:
    """Split and decode a key without checking its signature. Raises KeyFormatError with a
    message a user can act on."""
    if not isinstance(key, str):
        raise KeyFormatError("the key must be a string")
    if len(key) > MAX_KEY_CHARS:
        raise KeyFormatError(f"the key is longer than {MAX_KEY_CHARS} characters")
    parts = key.strip().split("-")
    if len(parts) != 3:
        raise KeyFormatError(
            f"expected LIC1-<payload>-<signature>, got {len(parts)} dash-separated parts"
        )
    prefix, payload_text, signature_text = parts
    if prefix != KEY_PREFIX:
        raise KeyFormatError(f"unknown prefix {prefix[:8]!r}; expected {KEY_PREFIX!r}")
    try:
        payload_bytes = b32decode(payload_text)
        signature = b32decode(signature_text)
    except (binascii.Error, ValueError) as e:
        raise KeyFormatError("the key is not valid base32") from e
    if len(signature) != SIGNATURE_LEN:
        raise KeyFormatError(f"the signature must be 64 bytes, got {len(signature)}")
    return ParsedKey(_decode_payload(payload_bytes), payload_bytes, signature)


def _decode_payload(data: bytes) -> KeyPayload:
    if len(data) < 2:
        raise KeyFormatError("the payload is too short")
    version, flags = data[0], data[1]
    if version == VERSION_V1:
        if len(data) != V1_LEN:
            raise KeyFormatError(f"a v1 payload is {V1_LEN} bytes, got {len(data)}")
        return KeyPayload(
            product_id=uuid.UUID(bytes=data[2:18]),
            license_id=uuid.UUID(bytes=data[18:34]),
            issued_at=int.from_bytes(data[34:42], "big"),
            fingerprint_hash=data[42:74],
            flags=flags,
            version=VERSION_V1,
        )
    if version != VERSION_V2:
        raise KeyFormatError(f"unknown key version {version}")
    if len(data) < V2_HEAD_LEN:
        raise KeyFormatError(f"a v2 payload is at least {V2_HEAD_LEN} bytes, got {len(data)}")
    entitlements = []
    cursor = V2_HEAD_LEN
    for _ in range(data[82]):
        if cursor >= len(data):
            raise KeyFormatError("an entitlement length byte is missing")
        length = data[cursor]
        cursor += 1
        if cursor + length > len(data):
            raise KeyFormatError("an entitlement runs past the end of the payload")
        try:
            entitlements.append(data[cursor : cursor + length].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise KeyFormatError("an entitlement is not valid UTF-8") from e
        cursor += length
    if cursor != len(data):
        raise KeyFormatError(f"{len(data) - cursor} trailing bytes after the entitlements")
    return KeyPayload(
        product_id=uuid.UUID(bytes=data[2:18]),
        license_id=uuid.UUID(bytes=data[18:34]),
        issued_at=int.from_bytes(data[34:42], "big"),
        expires_at=int.from_bytes(data[42:50], "big"),
        fingerprint_hash=data[50:82],
        flags=flags,
        entitlements=tuple(entitlements),
    )


def verify_key(public: Ed25519PublicKey, key: object) -> KeyPayload:
    """Parse and verify. Raises KeyFormatError or KeySignatureError."""
    parsed = parse_key(key)
    try:
        public.verify(parsed.signature, parsed.payload_bytes)
    except InvalidSignature as e:
        raise KeySignatureError("the signature was not made by this server's issuer key") from e
    return parsed.payload
