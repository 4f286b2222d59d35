"""Secret values encrypted at rest: sealing on the way in, opening where they are used.

Callers: `control.apply` seals every Secret document before anything is written; the
API's lifespan calls `unlock` once at start; the node hub uses a `Resolver` when it
sends a node its allocations; the reveal route calls `reveal` for admins.

What the store holds for a Secret, and nothing else:
- in its resource spec, `data` maps each key to `hmac-sha256:<hex>`, an HMAC of the
  Secret's name, the key and the value under a key derived for "secret-digests". Equal
  values give equal digests, so applying the same Secret twice is `unchanged` and plan
  can say which keys changed; without the server's key the digests say nothing.
- in `secret_values`, one Fernet token (AES-128-CBC + HMAC-SHA256) of all the values,
  under a key derived for "secrets".
- in `key_checks`, a Fernet token of a constant, written with the first Secret.

Invariants: nothing derived from the key is written; a value is decrypted only to be
sent to a node or shown to an admin who asked; no message or log line holds a value.
While any Secret is stored, a server whose key does not open the check token refuses
to start (`unlock`), and one started with the old key in ARMILLARY_SECRET_KEY_PREVIOUS
re-encrypts every Secret and the check with the current key, in one transaction,
before it serves.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from armillary.auth.keys import KeyRing
from armillary.errors import NotFound, PermanentError
from armillary.resources import canonical
from armillary.resources.secret import Secret
from armillary.store import secrets as store
from armillary.store.database import Database, Tx

log = logging.getLogger("armillary.secrets")

PURPOSE = "secrets"
DIGEST_PURPOSE = "secret-digests"
DIGEST_PREFIX = "hmac-sha256:"
_CHECK_PLAINTEXT = b"armillary secret key check v1"
_WRONG_KEY = (
    "ARMILLARY_SECRET_KEY is not the key this database's Secrets were encrypted with: "
    "the key check (table key_checks) opens neither with it nor with any key in "
    "ARMILLARY_SECRET_KEY_PREVIOUS. Start the server with the key the Secrets were "
    "written with. To change keys, set the new key in ARMILLARY_SECRET_KEY and the old "
    "one in ARMILLARY_SECRET_KEY_PREVIOUS: the server re-encrypts everything at start"
)


@dataclass(frozen=True, slots=True)
class Vault:
    """Fernet ciphers of the current key and the previous ones (current first), and the
    digest key. Seals with the current key only; opens with any of them."""

    ciphers: tuple[Fernet, ...] = field(repr=False)
    digest_key: bytes = field(repr=False)

    @classmethod
    def of(cls, ring: KeyRing) -> Vault:
        keys = ring.derive_all(PURPOSE)
        ciphers = tuple(Fernet(base64.urlsafe_b64encode(k)) for k in keys)
        return cls(ciphers, ring.derive(DIGEST_PURPOSE))

    def seal(self, data: Mapping[str, str]) -> str:
        """A token of `data`, made with the current key."""
        text = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False)
        return self.ciphers[0].encrypt(text.encode()).decode()

    def open(self, token: str, *, name: str) -> dict[str, str]:
        """The values of Secret `name` from its token; `PermanentError` if no key opens it."""
        for cipher in self.ciphers:
            try:
                plain = cipher.decrypt(token.encode())
            except InvalidToken:
                continue
            data = json.loads(plain)
            return {str(k): str(v) for k, v in data.items()}
        raise PermanentError(
            f"Secret {name!r} does not decrypt with ARMILLARY_SECRET_KEY or "
            "ARMILLARY_SECRET_KEY_PREVIOUS"
        )

    def digests(self, name: str, data: Mapping[str, str]) -> dict[str, str]:
        """What the resource's `data` holds in place of each value."""
        return {key: self._digest(name, key, value) for key, value in data.items()}

    def _digest(self, name: str, key: str, value: str) -> str:
        message = json.dumps([name, key, value], separators=(",", ":"), ensure_ascii=False)
        mac = hmac.new(self.digest_key, message.encode(), hashlib.sha256).hexdigest()
        return DIGEST_PREFIX + mac

    def check_token(self) -> str:
        return self.ciphers[0].encrypt(_CHECK_PLAINTEXT).decode()

    def key_of(self, token: str) -> int | None:
        """Which key made `token`: 0 the current one, i ≥ 1 the i-th previous, or None."""
        for index, cipher in enumerate(self.ciphers):
            try:
                if cipher.decrypt(token.encode()) == _CHECK_PLAINTEXT:
                    return index
            except InvalidToken:
                continue
        return None


def seal(vault: Vault, resource: Secret) -> tuple[canonical.Canonical, str]:
    """A Secret document's canonical form as the store keeps it (digests in `data`),
    and the token of its values."""
    plain = canonical.of(resource)
    data = dict(resource.spec.data)
    spec = {**plain.spec, "data": vault.digests(resource.metadata.name, data)}
    sealed = canonical.Canonical(
        kind=plain.kind,
        name=plain.name,
        spec=spec,
        labels=plain.labels,
        annotations=plain.annotations,
    )
    return sealed, vault.seal(data)


async def write(conn: Tx, vault: Vault, *, uid: str, ciphertext: str, now: dt.datetime) -> None:
    """Store a Secret's token, in the transaction that wrote its resource. The first
    one writes the key check; later ones make sure the check is still ours (another
    server with another key must not mix its tokens with ours)."""
    token = await store.check(conn, PURPOSE)
    if token is None:
        await store.put_check(conn, PURPOSE, vault.check_token(), now=now)
    elif vault.key_of(token) != 0:
        raise PermanentError(_WRONG_KEY)
    await store.put(conn, uid=uid, ciphertext=ciphertext, now=now)


async def unlock(db: Database, ring: KeyRing, *, now: dt.datetime) -> Vault:
    """The vault of `ring`, once the store agrees it is the right key; re-encrypts
    everything first if the store was written with one of the previous keys."""
    vault = Vault.of(ring)
    async with db.write() as conn:
        token = await store.check(conn, PURPOSE)
        if token is None:
            return vault  # no Secret was ever written: any key will do
        which = vault.key_of(token)
        if which is None and not await store.list_all(conn):
            # Nothing was encrypted with the lost key: start over with this one.
            log.warning("the secret key changed while no Secret was stored; checking the new one")
            await store.put_check(conn, PURPOSE, vault.check_token(), now=now)
            return vault
        if which is None:
            raise PermanentError(_WRONG_KEY)
        if which > 0:
            count = await rotate(conn, vault, now=now)
            log.warning(
                "re-encrypted %d Secrets with the current ARMILLARY_SECRET_KEY; "
                "they no longer need ARMILLARY_SECRET_KEY_PREVIOUS",
                count,
            )
    return vault


async def rotate(conn: Tx, vault: Vault, *, now: dt.datetime) -> int:
    """Re-encrypt every Secret and the key check with the current key, in the caller's
    transaction (all or nothing). Generations stay: no replica is replaced."""
    found = await store.list_all(conn)
    for sealed in found:
        if sealed.ciphertext is None:
            raise PermanentError(f"Secret {sealed.name!r} has no stored values; delete it")
        values = vault.open(sealed.ciphertext, name=sealed.name)
        await store.rekey(
            conn,
            sealed,
            data=vault.digests(sealed.name, values),
            ciphertext=vault.seal(values),
            now=now,
        )
    await store.put_check(conn, PURPOSE, vault.check_token(), now=now)
    return len(found)


async def reveal(conn: Tx, vault: Vault, name: str) -> dict[str, str]:
    """The values of Secret `name` in clear, for an admin who asked."""
    sealed = await store.get(conn, name)
    if sealed is None or sealed.ciphertext is None:
        raise NotFound(f"secret/{name} not found")
    return vault.open(sealed.ciphertext, name=name)


class Resolver:
    """The env replicas get from Secrets, for one push of allocations to a node: each
    Secret is read and decrypted once per push, and only in memory."""

    def __init__(self, conn: Tx, vault: Vault) -> None:
        self._conn = conn
        self._vault = vault
        self._opened: dict[str, tuple[str | None, dict[str, str]] | None] = {}

    async def env(
        self, uses: Iterable[Mapping[str, Any]], *, tenant: str
    ) -> tuple[dict[str, str], list[str]]:
        """The env from `uses` (`{secret, prefix}`; later ones win) for a replica of
        `tenant`, and the names of the Secrets it may not have: missing, another
        tenant's, or unreadable. Errors are logged by name, never with a value."""
        env: dict[str, str] = {}
        missing: list[str] = []
        for use in uses:
            name, prefix = str(use.get("secret")), str(use.get("prefix", ""))
            opened = await self._open(name)
            if opened is None or opened[0] not in (None, tenant):
                missing.append(name)
                continue
            env.update({prefix + key: value for key, value in opened[1].items()})
        return env, missing

    async def _open(self, name: str) -> tuple[str | None, dict[str, str]] | None:
        """(owner tenant, values) of Secret `name`, or None if it cannot be had."""
        if name not in self._opened:
            sealed = await store.get(self._conn, name)
            opened = None
            if sealed is not None and sealed.ciphertext is not None:
                try:
                    opened = sealed.tenant, self._vault.open(sealed.ciphertext, name=name)
                except PermanentError as exc:
                    log.error("%s", exc)
            self._opened[name] = opened
        return self._opened[name]


async def values_of(
    conn: Tx, vault: Vault, refs: Iterable[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """The values of Secret keys `refs` (`(secret, key)`), for the webhook endpoint to
    check signatures with, and the refs (`secret.key`) that could not be had: a
    missing Secret or key, or one that does not decrypt. Only in memory; never logged."""
    found: list[str] = []
    missing: list[str] = []
    opened: dict[str, dict[str, str] | None] = {}
    for name, key in refs:
        if name not in opened:
            sealed = await store.get(conn, name)
            values = None
            if sealed is not None and sealed.ciphertext is not None:
                try:
                    values = vault.open(sealed.ciphertext, name=name)
                except PermanentError as exc:
                    log.error("%s", exc)
            opened[name] = values
        values = opened[name]
        if values is None or key not in values:
            missing.append(f"{name}.{key}")
        else:
            found.append(values[key])
    return found, missing
