"""Rotor's webhook signatures (pure): HMAC-SHA256 over `{id}.{timestamp}.{body}`, sent as
`v1,<base64>` — the Standard Webhooks ("Svix-compatible") scheme.

Rotor sends it under `Rotor-Webhook-Id/-Timestamp/-Signature`; a Standard Webhooks sender or
relay uses `webhook-id/-timestamp/-signature`. Both families are accepted. Rotor's docs do not
say how the secret is written, so a `whsec_` secret is base64 after the prefix (as Svix) and any
other is its UTF-8 bytes; several secrets separated by spaces all verify (rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

ROTOR = ("rotor-webhook-id", "rotor-webhook-timestamp", "rotor-webhook-signature")
STANDARD = ("webhook-id", "webhook-timestamp", "webhook-signature")
FAMILIES = (ROTOR, STANDARD)  # Rotor's own names first: they are what Rotor sends
WINDOW_SECONDS = 5 * 60  # a delivery older (or newer) than this is refused: no replays
SVIX_PREFIX = "whsec_"


class SignatureError(ValueError):
    """The request does not carry a valid signature; the message says why (no secrets)."""


@dataclass(frozen=True)
class Signed:
    """The three signature headers of one delivery."""

    id: str
    timestamp: str
    signature: str


def secret_keys(value: str) -> list[bytes]:
    """The HMAC keys in a secret setting; raises ValueError naming what is wrong (not the value)."""
    keys = []
    for n, secret in enumerate(value.split(), start=1):
        if secret.startswith(SVIX_PREFIX):
            try:
                key = base64.b64decode(secret.removeprefix(SVIX_PREFIX), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not key:
                raise ValueError(
                    f"secret {n} starts with {SVIX_PREFIX} but is not base64 after it: "
                    "copy the endpoint's signing secret from Rotor again"
                )
            keys.append(key)
        else:
            keys.append(secret.encode())
    if not keys:
        raise ValueError("is empty: copy the webhook endpoint's signing secret from Rotor")
    return keys


def secret_forms(value: str) -> str:
    """How the secrets were read, fit to show (`1 secret: whsec_ base64`)."""
    forms = [
        f"{SVIX_PREFIX} base64" if s.startswith(SVIX_PREFIX) else "plain text"
        for s in value.split()
    ]
    noun = "secret" if len(forms) == 1 else "secrets"
    return f"{len(forms)} {noun}: {', '.join(forms)}"


def signed_headers(headers: Mapping[str, str]) -> Signed:
    """The delivery's signature headers, in either family (Rotor's when both are sent)."""
    for family in FAMILIES:
        values = [headers.get(name) for name in family]
        if any(values):
            missing = [name for name, value in zip(family, values, strict=True) if not value]
            if missing:
                raise SignatureError(f"missing {', '.join(missing)}")
            return Signed(*values)  # type: ignore[arg-type]
    raise SignatureError(f"missing {', '.join(ROTOR)} (or {', '.join(STANDARD)})")


def check_timestamp(signed: Signed, now: float) -> None:
    try:
        age = now - int(signed.timestamp)
    except ValueError:
        raise SignatureError("the webhook timestamp is not a Unix time") from None
    if abs(age) > WINDOW_SECONDS:
        raise SignatureError("the webhook timestamp is outside the 5-minute window")


def signature(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(keys: list[bytes], headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Raise SignatureError unless one of the header's signatures is made with one of `keys`."""
    signed = signed_headers(headers)
    check_timestamp(signed, now)
    offered = [s for s in signed.signature.split() if s.startswith("v1,")]
    for key in keys:
        expected = signature(key, signed.id, signed.timestamp, body).encode()
        if any(hmac.compare_digest(expected, s.encode()) for s in offered):
            return
    raise SignatureError("no signature matches the webhook secret")
