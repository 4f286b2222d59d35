"""Sealing short values for the store with a key derived from the server's secret key.

`Sealer(ring, purpose)` encrypts with Fernet (AES-128-CBC + HMAC-SHA256) under the
current derived key and opens values sealed under any key still in the ring, so a
key rotation does not strand what was sealed before it. Used for the one tenant key
a provisioning run hands over once: the store holds it only sealed, until it is
collected.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from armillary.auth.keys import KeyRing
from armillary.errors import PermanentError


class Sealer:
    def __init__(self, ring: KeyRing, *, purpose: str) -> None:
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(key)) for key in ring.derive_all(purpose)]
        )

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise PermanentError(
                "a sealed value does not open with ARMILLARY_SECRET_KEY (or the previous "
                "keys); was the key changed without ARMILLARY_SECRET_KEY_PREVIOUS?"
            ) from None
