"""Password hashing for users: argon2id with argon2-cffi's defaults (RFC 9106's
second recommended parameter set), verified in constant time. API keys and tokens
are high-entropy and use a fast hash instead (see `auth.tokens`)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from armillary.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024
_HASHER = PasswordHasher()


def check_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing, or too long to hash cheaply."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Invalid(
            f"password: expected {MIN_LENGTH} to {MAX_LENGTH} characters, got {len(password)}"
        )


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(password_hash: str, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash of nothing in particular: verifying against it when a user does not exist
# takes as long as a real check, so timing does not tell which user names exist.
DUMMY_HASH = _HASHER.hash("armillary-no-such-user")
