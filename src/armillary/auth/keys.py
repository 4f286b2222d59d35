"""The server's secret key, and the keys derived from it for each purpose.

`ARMILLARY_SECRET_KEY` is either the key itself or the path of a file holding it:
32 random bytes, url-safe base64 (what `armillary init --secret-key` prints).
`ARMILLARY_SECRET_KEY_PREVIOUS` holds the keys it replaced, comma-separated,
while data encrypted with them is re-encrypted.

In `production` mode the server refuses to start without a key. In `dev` mode it
creates one in `<home>/secret.key` (0600) the first time and warns loudly, so a
laptop demo needs nothing set.

Each use gets its own key, derived with HKDF-SHA256 and a purpose label, so the key
that signs tenant tokens is never the key that encrypts secrets. Nothing derived
from the key is ever written to the store; only a check value (see `auth.secrets`)
that says whether the key is the one the data was written with.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from armillary.errors import PermanentError

KEY_FILE = "secret.key"
KEY_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRing:
    """The current key and the previous ones (newest first), as raw bytes."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    generated: Path | None = None  # set when dev mode just created the key file

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose` (e.g. "secrets", "tenant-tokens")."""
        return derive(self.current, purpose)

    def derive_all(self, purpose: str) -> list[bytes]:
        """The derived key of the current and of every previous key, current first."""
        return [derive(k, purpose) for k in (self.current, *self.previous)]


def derive(key: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(key)


def new_key() -> str:
    """A fresh key in the form ARMILLARY_SECRET_KEY takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse(value: str, *, source: str) -> bytes:
    """The raw key from its text form; `source` names where it came from in errors."""
    text = value.strip()
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise PermanentError(
            f"{source}: expected {KEY_BYTES} bytes in url-safe base64 (44 characters), "
            f"got {len(text)} characters; make one with `armillary init --secret-key`"
        )
    return raw


def _read(value: str, *, name: str) -> bytes:
    """A key given as itself or as the path of a file holding it."""
    candidate = Path(value)
    if os.sep in value or candidate.suffix == ".key":
        try:
            return parse(candidate.read_text(), source=f"{name} file {candidate}")
        except OSError as exc:
            raise PermanentError(f"{name}: cannot read the key file {candidate}: {exc}") from None
    return parse(value, source=name)


def load(*, value: str | None, previous: str | None, home: Path, production: bool) -> KeyRing:
    """The key ring from settings; creates the dev key file when allowed."""
    old = tuple(
        _read(v, name="ARMILLARY_SECRET_KEY_PREVIOUS") for v in (previous or "").split(",") if v
    )
    if value:
        return KeyRing(current=_read(value, name="ARMILLARY_SECRET_KEY"), previous=old)
    path = home / KEY_FILE
    if path.exists():
        return KeyRing(current=parse(path.read_text(), source=f"key file {path}"), previous=old)
    if production:
        raise PermanentError(
            "ARMILLARY_SECRET_KEY is not set; production mode will not start without it "
            "(it encrypts secrets and signs tenant tokens). Make one with "
            "`armillary init --secret-key` and keep it outside the database's backups"
        )
    home.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(new_key() + "\n")
    return KeyRing(
        current=parse(path.read_text(), source=f"key file {path}"), previous=old, generated=path
    )
