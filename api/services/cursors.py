"""Page cursors (GET /v1/detect, GET /v1/deliveries): where the next page starts, sealed for the tenant that got it.

A cursor is the db layer's position (a row id, a timestamp) encrypted and authenticated with AES-GCM under a key
derived from the server's signing key, with the list it pages and the tenant as associated data. So a client
learns nothing from it (a delivery id counts every tenant's attempts), and a cursor another tenant got, one for
another list, or a tampered one is refused as malformed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from api.errors import InvalidInput
from facequeue.core.settings import Settings
from facequeue.core.storage import signing_key

NONCE_BYTES = 12  # AES-GCM's standard nonce, random per cursor
MALFORMED = "cursor is malformed"


def seal(position: str, listing: str, tenant_id: str | None, settings: Settings) -> str:
    """The opaque cursor for `position` in `listing` (deliveries, tasks) of `tenant_id`."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + _cipher(settings).encrypt(nonce, position.encode(), _bound_to(listing, tenant_id))
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(cursor: str, listing: str, tenant_id: str | None, settings: Settings) -> str:
    """The position a cursor from `seal` holds; InvalidInput for anything else."""
    try:
        sealed = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4))
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        return _cipher(settings).decrypt(nonce, ciphertext, _bound_to(listing, tenant_id)).decode()
    except (binascii.Error, ValueError, InvalidTag) as error:  # ValueError: non-ASCII text, a short nonce
        raise InvalidInput(MALFORMED, field="cursor") from error


def _cipher(settings: Settings) -> AESGCM:
    # a key of its own: the signing key also signs media links, and one key never serves two purposes
    return AESGCM(hmac.digest(signing_key(settings), b"facequeue page cursors", hashlib.sha256))


def _bound_to(listing: str, tenant_id: str | None) -> bytes:
    return f"{listing}\x00{tenant_id or ''}".encode()
