"""Keyset cursors: a page ends at a (time, id) pair, and the next page starts after it."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime


class InvalidCursor(ValueError):
    """A listing cursor that this service did not hand out."""


def encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = f"{moment.isoformat()}|{row_id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, _, hex_id = raw.partition("|")
        moment, row_id = datetime.fromisoformat(stamp), uuid.UUID(hex=hex_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursor(f"cursor {cursor[:40]!r} is not one this service handed out") from error
    if moment.tzinfo is None:
        raise InvalidCursor(f"cursor {cursor[:40]!r} is not one this service handed out")
    return moment, row_id
