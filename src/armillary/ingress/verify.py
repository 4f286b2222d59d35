"""Signature verification of inbound webhooks, one scheme per sender.

The webhook endpoint (`POST /webhooks/<source>`, api/routes/webhooks.py) calls `verify`
with the request's headers, its raw body (before anything parses it) and the secrets of
the `WebhookSource`. The function is pure: no I/O, and the clock arrives as `now`. It
returns a `Verified` saying what the sender says about the delivery, or raises
`SignatureRefused`, whose message names the header at fault ("X-Slack-Signature: does not match").

Invariants:
- signatures are compared only with `hmac.compare_digest`, as decoded digests;
- every configured secret is tried, so during a rotation the old and the new secret
  both pass: the request passes when any secret matches any signature sent;
- nothing is read from the body before its signature has matched;
- a timestamp the sender signs must lie within `tolerance_s` of `now`, in the past or
  in the future.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from armillary import errors, timestamps
from armillary.resources import webhook

SLACK_SIGNATURE = "X-Slack-Signature"
SLACK_TIMESTAMP = "X-Slack-Request-Timestamp"
GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITHUB_EVENT = "X-GitHub-Event"
GITHUB_DELIVERY = "X-GitHub-Delivery"
PAGERDUTY_SIGNATURE = "X-PagerDuty-Signature"
STRIPE_SIGNATURE = "Stripe-Signature"
WHSEC_PREFIX = "whsec_"

# Whole seconds in ASCII digits (`\d` would take other scripts' digits, and int() reads
# them); twelve digits reach past the year 9999 and keep a hostile value short.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = "<64 hex digits>"

Decode = Callable[[str, int], bytes | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """What a request whose signature matched says about itself.

    `delivery_id` is the sender's id for the delivery, the same on every retry (the key
    for replay protection); `event_type` the kind of event when the sender names one;
    `sent_at` the timestamp the sender signed; `handshake` the text to answer with when
    the request is the sender checking the endpoint rather than an event. GitHub's
    delivery id and event type come from headers its signature does not cover; every
    other sender's come from signed headers or the signed body.
    """

    kind: webhook.SourceType
    delivery_id: str | None = None
    event_type: str | None = None
    sent_at: dt.datetime | None = None
    handshake: str | None = None


class SignatureRefused(errors.Unauthorized):
    """The request does not prove it came from the sender; `header` names what failed."""

    title = "Webhook refused"

    def __init__(self, header: str, reason: str) -> None:
        self.header = header
        self.reason = reason
        super().__init__(f"{header}: {reason}")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    keys: tuple[bytes, ...]
    now: dt.datetime
    tolerance_s: int

    def header(self, name: str) -> str:
        """The header's value; `SignatureRefused` when it is absent or blank."""
        value = self.optional(name)
        if value is None:
            raise SignatureRefused(name, "missing")
        return value

    def optional(self, name: str) -> str | None:
        return self.headers.get(name.lower(), "").strip() or None


def verify(
    kind: webhook.SourceType,
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[bytes | str],
    now: dt.datetime,
    tolerance_s: int,
    hmac_settings: webhook.GenericHmac | None = None,
) -> Verified:
    """Check that `body` and `headers` were signed by a `kind` sender with one of `secrets`.

    Header names are matched case-insensitively. `now` is when the request arrived
    (naive means UTC). `hmac_settings` is required for `generic-hmac` and refused for
    every other kind, as `WebhookSource` validation does. Raises `SignatureRefused`.
    """
    if kind == "generic-hmac" and hmac_settings is None:
        raise ValueError("kind generic-hmac needs hmac_settings (the source's spec.hmac)")
    if kind != "generic-hmac" and hmac_settings is not None:
        raise ValueError(f"hmac_settings apply to kind generic-hmac only, not {kind!r}")
    lowered = {name.lower(): value for name, value in headers.items()}
    if kind in ("standard", "incidentio"):
        keys = _standard_keys(_standard_prefix(lowered) + "signature", secrets)
    else:
        keys = _raw_keys(_signature_header(kind, hmac_settings), secrets)
    request = _Request(
        headers=lowered, body=body, keys=keys, now=timestamps.utc(now), tolerance_s=tolerance_s
    )
    if kind == "slack":
        return _slack(request)
    if kind == "github":
        return _github(request)
    if kind == "pagerduty":
        return _pagerduty(request)
    if kind == "stripe":
        return _stripe(request)
    if kind in ("standard", "incidentio"):
        return _standard(request, kind)
    assert hmac_settings is not None
    return _generic(request, hmac_settings)


def _signature_header(kind: str, settings: webhook.GenericHmac | None) -> str:
    if settings is not None:
        return settings.header
    names = {
        "slack": SLACK_SIGNATURE,
        "github": GITHUB_SIGNATURE,
        "pagerduty": PAGERDUTY_SIGNATURE,
        "stripe": STRIPE_SIGNATURE,
    }
    if kind not in names:
        raise ValueError(f"unknown webhook source type {kind!r}")
    return names[kind]


def _raw_keys(header: str, secrets: Sequence[bytes | str]) -> tuple[bytes, ...]:
    """The secrets as HMAC keys, byte for byte as the sender shows them (text as UTF-8)."""
    keys = tuple(s.encode() if isinstance(s, str) else bytes(s) for s in secrets)
    return _usable(header, keys)


def _standard_keys(header: str, secrets: Sequence[bytes | str]) -> tuple[bytes, ...]:
    """Standard Webhooks secrets: `whsec_` and the key in base64.

    The prefix is optional and missing base64 padding is restored, as the reference
    libraries do.
    """
    keys = []
    for position, secret in enumerate(secrets, start=1):
        text = secret if isinstance(secret, str) else secret.decode("ascii", "replace")
        text = text.strip().removeprefix(WHSEC_PREFIX)
        try:
            keys.append(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        except ValueError:
            raise SignatureRefused(header, f"secret {position} is not whsec_<base64>") from None
    return _usable(header, tuple(keys))


def _usable(header: str, keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    # An empty key is public knowledge: anyone could sign with it.
    if not keys:
        raise SignatureRefused(header, "no secret configured to check it against")
    for position, key in enumerate(keys, start=1):
        if not key:
            raise SignatureRefused(header, f"secret {position} is empty")
    return keys


def _fresh(request: _Request, header: str, value: str, *, field: str = "") -> dt.datetime:
    """The signed Unix time `value`; `SignatureRefused` unless it lies within tolerance of now."""
    lead = f"{field} is " if field else ""
    if not _UNIX_SECONDS.fullmatch(value):
        raise SignatureRefused(header, f"{lead}not a Unix time in whole seconds")
    age_s = request.now.timestamp() - int(value)
    allowed = f"at most {request.tolerance_s} s allowed"
    if age_s > request.tolerance_s:
        raise SignatureRefused(header, f"{lead}{math.ceil(age_s)} s old; {allowed}")
    if -age_s > request.tolerance_s:
        raise SignatureRefused(header, f"{lead}{math.ceil(-age_s)} s in the future; {allowed}")
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC)


def _macs(keys: Sequence[bytes], message: bytes, algorithm: str = "sha256") -> list[bytes]:
    return [hmac.digest(key, message, algorithm) for key in keys]  # OpenSSL's one-shot HMAC


def _settle(
    header: str, given: Sequence[str], decode: Decode, expected: Sequence[bytes], form: str
) -> None:
    """Pass when any signature in `given` is one of the `expected` digests.

    An entry that does not decode to a digest cannot match and is skipped (Stripe's and
    PagerDuty's own libraries do the same); only when none decodes is the header malformed.
    """
    size = len(expected[0])
    digests = [d for d in (decode(g, size) for g in given) if d is not None]
    if not digests:
        raise SignatureRefused(header, f"malformed; expected {form}")
    if not any(hmac.compare_digest(d, e) for d in digests for e in expected):
        raise SignatureRefused(header, "does not match")


def _hex(value: str, size: int) -> bytes | None:
    try:
        digest = binascii.unhexlify(value)
    except ValueError:  # binascii.Error is one; so is text that is not ASCII
        return None
    return digest if len(digest) == size else None


def _base64(value: str, size: int) -> bytes | None:
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return digest if len(digest) == size else None


def _json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; empty when it is not one (form posts, plain text)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def _text(document: Mapping[str, Any], *path: str) -> str | None:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _slack(request: _Request) -> Verified:
    """Slack: `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    signature = request.header(SLACK_SIGNATURE)
    stamp = request.header(SLACK_TIMESTAMP)
    sent_at = _fresh(request, SLACK_TIMESTAMP, stamp)
    form = f"v0={_HEX_SHA256}"
    if not signature.startswith("v0="):
        raise SignatureRefused(SLACK_SIGNATURE, f"malformed; expected {form}")
    signed = b"v0:" + stamp.encode() + b":" + request.body
    _settle(SLACK_SIGNATURE, [signature[3:]], _hex, _macs(request.keys, signed), form)
    document = _json_object(request.body)
    outer = _text(document, "type")
    return Verified(
        kind="slack",
        delivery_id=_text(document, "event_id"),
        event_type=_text(document, "event", "type") if outer == "event_callback" else outer,
        sent_at=sent_at,
        handshake=_text(document, "challenge") if outer == "url_verification" else None,
    )


def _github(request: _Request) -> Verified:
    """GitHub: `sha256=` and the hex HMAC-SHA256 of the body; no timestamp is signed."""
    signature = request.header(GITHUB_SIGNATURE)
    form = f"sha256={_HEX_SHA256}"
    if not signature.startswith("sha256="):
        raise SignatureRefused(GITHUB_SIGNATURE, f"malformed; expected {form}")
    given = [signature.removeprefix("sha256=")]
    _settle(GITHUB_SIGNATURE, given, _hex, _macs(request.keys, request.body), form)
    event = request.optional(GITHUB_EVENT)
    return Verified(
        kind="github",
        delivery_id=request.optional(GITHUB_DELIVERY),
        event_type=event,
        handshake="pong" if event == "ping" else None,
    )


def _pagerduty(request: _Request) -> Verified:
    """PagerDuty v3: `v1=<hex>` entries, comma-separated, of HMAC-SHA256 of the body."""
    header = request.header(PAGERDUTY_SIGNATURE)
    given = [e.strip()[3:] for e in header.split(",") if e.strip().startswith("v1=")]
    form = f"v1={_HEX_SHA256}[,v1=…]"
    if not given:
        raise SignatureRefused(PAGERDUTY_SIGNATURE, f"no v1 signature; expected {form}")
    _settle(PAGERDUTY_SIGNATURE, given, _hex, _macs(request.keys, request.body), form)
    document = _json_object(request.body)
    event_type = _text(document, "event", "event_type")
    return Verified(
        kind="pagerduty",
        delivery_id=_text(document, "event", "id"),
        event_type=event_type,
        handshake="pong" if event_type == "pagey.ping" else None,
    )


def _stripe(request: _Request) -> Verified:
    """Stripe: `t=<ts>,v1=<hex>[,v1=…]`, hex HMAC-SHA256 of `{t}.{body}`."""
    header = request.header(STRIPE_SIGNATURE)
    fields = [entry.strip().partition("=") for entry in header.split(",")]
    stamps = [value for key, _, value in fields if key == "t"]
    given = [value for key, _, value in fields if key == "v1"]
    if len(stamps) != 1:
        raise SignatureRefused(STRIPE_SIGNATURE, "expected exactly one t=<Unix time>")
    if not given:
        raise SignatureRefused(STRIPE_SIGNATURE, f"no v1 signature; expected v1={_HEX_SHA256}")
    sent_at = _fresh(request, STRIPE_SIGNATURE, stamps[0], field="t=")
    signed = stamps[0].encode() + b"." + request.body
    _settle(STRIPE_SIGNATURE, given, _hex, _macs(request.keys, signed), f"v1={_HEX_SHA256}")
    document = _json_object(request.body)
    return Verified(
        kind="stripe",
        delivery_id=_text(document, "id"),
        event_type=_text(document, "type"),
        sent_at=sent_at,
    )


def _standard_prefix(headers: Mapping[str, str]) -> str:
    """`webhook-`, the standard's names, unless only Svix's branded `svix-` headers came."""
    names = ("id", "timestamp", "signature")
    if any(f"webhook-{n}" in headers for n in names):
        return "webhook-"
    return "svix-" if any(f"svix-{n}" in headers for n in names) else "webhook-"


def _standard(request: _Request, kind: webhook.SourceType) -> Verified:
    """Standard Webhooks: `v1,<base64>` entries of HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    prefix = _standard_prefix(request.headers)
    id_header, stamp_header, signature_header = (
        prefix + name for name in ("id", "timestamp", "signature")
    )
    message_id = request.header(id_header)
    stamp = request.header(stamp_header)
    signature = request.header(signature_header)
    sent_at = _fresh(request, stamp_header, stamp)
    given = [entry[3:] for entry in signature.split() if entry.startswith("v1,")]
    if not given:
        raise SignatureRefused(
            signature_header, "no v1 signature; expected v1,<base64> [v1,<base64> …]"
        )
    signed = f"{message_id}.{stamp}.".encode() + request.body
    _settle(signature_header, given, _base64, _macs(request.keys, signed), "v1,<base64>")
    # The spec's payloads name their type in `type`; incident.io's in `event_type`.
    type_field = "event_type" if kind == "incidentio" else "type"
    return Verified(
        kind=kind,
        delivery_id=message_id,
        event_type=_text(_json_object(request.body), type_field),
        sent_at=sent_at,
    )


def _generic(request: _Request, settings: webhook.GenericHmac) -> Verified:
    """A configured HMAC of the body, or of `{timestamp}.{body}` with a timestamp header."""
    value = request.header(settings.header)
    form = f"{settings.prefix}<{settings.encoding} HMAC-{settings.algorithm.upper()}>"
    if not value.startswith(settings.prefix):
        raise SignatureRefused(settings.header, f"malformed; expected {form}")
    signed, sent_at = request.body, None
    if settings.timestamp_header is not None:
        stamp = request.header(settings.timestamp_header)
        sent_at = _fresh(request, settings.timestamp_header, stamp)
        signed = stamp.encode() + b"." + request.body
    decode = _hex if settings.encoding == "hex" else _base64
    given = [value[len(settings.prefix) :]]
    _settle(settings.header, given, decode, _macs(request.keys, signed, settings.algorithm), form)
    return Verified(kind="generic-hmac", sent_at=sent_at)
