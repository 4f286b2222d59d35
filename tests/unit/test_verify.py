"""Webhook signature verification (armillary.ingress.verify).

Each sender's own published example where one exists, the Standard Webhooks reference
libraries' vectors, one test per way a request is refused, and Hypothesis properties
over bodies and secrets. The signers below are written from the senders' docs, apart
from the code under test, so a test cannot pass by the verifier agreeing with itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary import errors
from armillary.ingress import verify
from armillary.resources import webhook

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
TOLERANCE_S = 300
BODY = b'{"id":"evt_1","type":"example.event","event":{"id":"E1","event_type":"x.y"}}'
KEY_A = b"key-a-0123456789abcdef0123456789"
KEY_B = b"key-b-0123456789abcdef0123456789"

# A configured sender: sha512, base64, a prefix and a signed timestamp header, so the
# tests cover the paths that differ from the named senders.
GENERIC = webhook.GenericHmac(
    header="X-Signature",
    algorithm="sha512",
    encoding="base64",
    prefix="sha512=",
    timestamp_header="X-Timestamp",
)

KINDS = ["slack", "github", "pagerduty", "stripe", "standard", "incidentio", "generic-hmac"]
TIMED = ["slack", "stripe", "standard", "incidentio", "generic-hmac"]
SIGNATURE_HEADER = {
    "slack": "X-Slack-Signature",
    "github": "X-Hub-Signature-256",
    "pagerduty": "X-PagerDuty-Signature",
    "stripe": "Stripe-Signature",
    "standard": "webhook-signature",
    "incidentio": "webhook-signature",
    "generic-hmac": "X-Signature",
}
# Where a stale or future timestamp is reported, and how the reason starts.
TIMESTAMP_AT = {
    "slack": ("X-Slack-Request-Timestamp", ""),
    "stripe": ("Stripe-Signature", "t= is "),
    "standard": ("webhook-timestamp", ""),
    "incidentio": ("webhook-timestamp", ""),
    "generic-hmac": ("X-Timestamp", ""),
}


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, "sha256").hexdigest()


def _b64(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return base64.b64encode(hmac.new(key, message, algorithm).digest()).decode()


def sign(kind: str, body: bytes, key: bytes, *, at: int = NOW_S) -> dict[str, str]:
    """The headers `kind`'s sender would send for `body`, per its docs."""
    if kind == "slack":
        return {
            "X-Slack-Request-Timestamp": str(at),
            "X-Slack-Signature": "v0=" + _hex(key, f"v0:{at}:".encode() + body),
        }
    if kind == "github":
        return {
            "X-Hub-Signature-256": "sha256=" + _hex(key, body),
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        }
    if kind == "pagerduty":
        return {"X-PagerDuty-Signature": "v1=" + _hex(key, body)}
    if kind == "stripe":
        return {"Stripe-Signature": f"t={at},v1=" + _hex(key, f"{at}.".encode() + body)}
    if kind in ("standard", "incidentio"):
        return {
            "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            "webhook-timestamp": str(at),
            "webhook-signature": "v1,"
            + _b64(key, f"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.{at}.".encode() + body),
        }
    assert kind == "generic-hmac"
    return {
        "X-Timestamp": str(at),
        "X-Signature": "sha512=" + _b64(key, f"{at}.".encode() + body, "sha512"),
    }


def shown(kind: str, key: bytes) -> bytes | str:
    """The secret as the sender shows it to the user: Standard Webhooks as `whsec_…`."""
    if kind in ("standard", "incidentio"):
        return "whsec_" + base64.b64encode(key).decode()
    return key


def check(
    kind: str,
    headers: dict[str, str],
    body: bytes,
    secrets: list[bytes | str],
    *,
    now: dt.datetime = NOW,
    hmac_settings: webhook.GenericHmac | None = None,
) -> verify.Verified:
    if kind == "generic-hmac" and hmac_settings is None:
        hmac_settings = GENERIC
    return verify.verify(
        kind,  # type: ignore[arg-type]
        headers=headers,
        body=body,
        secrets=secrets,
        now=now,
        tolerance_s=TOLERANCE_S,
        hmac_settings=hmac_settings,
    )


def refused(kind: str, headers: dict[str, str], body: bytes, secrets: list[bytes | str]) -> str:
    with pytest.raises(verify.SignatureRefused) as caught:
        check(kind, headers, body, secrets)
    return str(caught.value)


def at_unix(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


# --- The senders' own published examples --------------------------------------------

# Slack, "Verifying requests from Slack", the worked example with a known signing secret:
# https://api.slack.com/authentication/verifying-requests-from-slack
# (moved to https://docs.slack.dev/authentication/verifying-requests-from-slack).
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_HEADERS = {
    "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP),
    "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
}


def test_slack_published_example_verifies() -> None:
    got = check("slack", SLACK_HEADERS, SLACK_BODY, [SLACK_SECRET], now=at_unix(SLACK_TIMESTAMP))
    # A slash command is form-encoded: no event id, no event type, no handshake.
    assert got == verify.Verified(kind="slack", sent_at=at_unix(SLACK_TIMESTAMP))


def test_slack_published_example_is_stale_five_minutes_and_a_second_later() -> None:
    later = at_unix(SLACK_TIMESTAMP + TOLERANCE_S + 1)
    with pytest.raises(verify.SignatureRefused) as caught:
        check("slack", SLACK_HEADERS, SLACK_BODY, [SLACK_SECRET], now=later)
    assert str(caught.value) == "X-Slack-Request-Timestamp: 301 s old; at most 300 s allowed"


# GitHub, "Validating webhook deliveries", section "Testing the webhook payload validation":
# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_published_example_verifies() -> None:
    headers = {
        "X-Hub-Signature-256": GITHUB_SIGNATURE,
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    assert check("github", headers, GITHUB_BODY, [GITHUB_SECRET]) == verify.Verified(
        kind="github", delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958", event_type="issues"
    )


def test_github_published_signature_does_not_fit_another_body() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    message = refused("github", headers, b"Hello, World?", [GITHUB_SECRET])
    assert message == "X-Hub-Signature-256: does not match"


def test_generic_hmac_configured_like_github_verifies_githubs_example() -> None:
    like_github = webhook.GenericHmac(header="X-Hub-Signature-256", prefix="sha256=")
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    got = check("generic-hmac", headers, GITHUB_BODY, [GITHUB_SECRET], hmac_settings=like_github)
    assert got == verify.Verified(kind="generic-hmac")


# PagerDuty publishes no vector in its docs; its own Go client does, in
# PagerDuty/go-pagerduty, webhookv3/webhookv3_test.go (TestVerifySignature).
PAGERDUTY_SECRET = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK"
PAGERDUTY_BODY = (
    b'{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated",'
    b'"resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"html_url":'
    b'"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","self":'
    b'"https://api.pagerduty.com/users/PLH1HKV","summary":"Tenex Engineer","type":'
    b'"user_reference"},"client":null,"data":{"id":"PGR0VU2","type":"incident","self":'
    b'"https://api.pagerduty.com/incidents/PGR0VU2","html_url":'
    b'"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"status":"triggered","title":'
    b'"A little bump in the road","service":{"html_url":'
    b'"https://acme.pagerduty.com/services/PF9KMXH","id":"PF9KMXH","self":'
    b'"https://api.pagerduty.com/services/PF9KMXH","summary":"API Service","type":'
    b'"service_reference"},"assignees":[{"html_url":"https://acme.pagerduty.com/users/PTUXL6G",'
    b'"id":"PTUXL6G","self":"https://api.pagerduty.com/users/PTUXL6G","summary":"User 123",'
    b'"type":"user_reference"}],"escalation_policy":{"html_url":'
    b'"https://acme.pagerduty.com/escalation_policies/PUS0KTE","id":"PUS0KTE","self":'
    b'"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":"Default","type":'
    b'"escalation_policy_reference"},"teams":[{"html_url":'
    b'"https://acme.pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","self":'
    b'"https://api.pagerduty.com/teams/PFCVPS0","summary":"Engineering","type":'
    b'"team_reference"}],"priority":{"html_url":'
    b'"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","self":'
    b'"https://api.pagerduty.com/priorities/PSO75BM","summary":"P1","type":'
    b'"priority_reference"},"urgency":"high","conference_bridge":{"conference_number":1000,'
    b'"conference_url":"https://example.com"},"resolve_reason":null}}}'
)
PAGERDUTY_VALID = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd"
PAGERDUTY_MISMATCH = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5"
# The two-signature example header of PagerDuty's "Verifying Signatures" page
# (https://developer.pagerduty.com/docs/verifying-signatures): shape only, no secret given.
PAGERDUTY_DOC_SIGNATURES = (
    "v1=f03de6f61df6e454f3620c4d6aca17ad072d3f8bbb2760eac3b2ad391b5e8073,"
    "v1=130dcacb53a94d983a37cf2acba98e805a1c37185309ba56fdcccbcf00d6dd8b"
)


def test_pagerduty_client_vector_verifies() -> None:
    headers = {"X-PagerDuty-Signature": PAGERDUTY_VALID}
    assert check("pagerduty", headers, PAGERDUTY_BODY, [PAGERDUTY_SECRET]) == verify.Verified(
        kind="pagerduty",
        delivery_id="01BWDWL3NYY7LUFPZCC28QUCMK",
        event_type="incident.priority_updated",
    )


def test_pagerduty_client_mismatch_vector_is_refused() -> None:
    headers = {"X-PagerDuty-Signature": PAGERDUTY_MISMATCH}
    message = refused("pagerduty", headers, PAGERDUTY_BODY, [PAGERDUTY_SECRET])
    assert message == "X-PagerDuty-Signature: does not match"


def test_pagerduty_any_one_of_several_signatures_passes() -> None:
    headers = {"X-PagerDuty-Signature": f"{PAGERDUTY_DOC_SIGNATURES},{PAGERDUTY_VALID}"}
    got = check("pagerduty", headers, PAGERDUTY_BODY, [PAGERDUTY_SECRET])
    assert got.delivery_id == "01BWDWL3NYY7LUFPZCC28QUCMK"


def test_pagerduty_documented_signatures_alone_do_not_match() -> None:
    headers = {"X-PagerDuty-Signature": PAGERDUTY_DOC_SIGNATURES}
    message = refused("pagerduty", headers, PAGERDUTY_BODY, [PAGERDUTY_SECRET])
    assert message == "X-PagerDuty-Signature: does not match"


# Stripe publishes no secret/body/signature triple. Its docs' example header
# (https://docs.stripe.com/webhooks/signature) shows the shape, a v0 test-mode entry
# included; it is quoted verbatim by arlyon/async-stripe (test_signature_parse) and
# typeclasses/stripe (stripe-signature/test/test.hs). Verified against any secret it
# must get as far as comparing, not stop as malformed.
STRIPE_DOC_HEADER = (
    "t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,"
    "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
)


def test_stripe_documented_header_parses_and_is_compared() -> None:
    with pytest.raises(verify.SignatureRefused) as caught:
        check(
            "stripe",
            {"Stripe-Signature": STRIPE_DOC_HEADER},
            BODY,
            ["whsec_test_secret"],
            now=at_unix(1492774577),
        )
    assert str(caught.value) == "Stripe-Signature: does not match"


def test_stripe_third_party_vector_verifies() -> None:
    # typeclasses/stripe, stripe-signature/test/test.hs (validationFailures): secret
    # "secret", t=123, body "hello" -> HMAC-SHA256("123.hello"). Not from Stripe itself.
    header = "t=123,v1=f89c0a0e96fa6304a7ebd5ecaf13bc1beb859577cd7cafb7bdbc43c3bc2f6afa"
    got = check("stripe", {"Stripe-Signature": header}, b"hello", ["secret"], now=at_unix(123))
    assert got == verify.Verified(kind="stripe", sent_at=at_unix(123))


def test_stripe_secret_is_used_as_text_not_base64_decoded() -> None:
    # Stripe secrets look like Standard Webhooks ones (whsec_…) but stripe-python,
    # stripe-node and the docs use the whole string as the key.
    secret = "whsec_" + base64.b64encode(KEY_A).decode()
    body = b'{"id":"evt_1Nq","type":"invoice.paid"}'
    headers = sign("stripe", body, secret.encode())
    assert check("stripe", headers, body, [secret]) == verify.Verified(
        kind="stripe", delivery_id="evt_1Nq", event_type="invoice.paid", sent_at=NOW
    )


# --- Standard Webhooks reference vectors ------------------------------------------------

# standard-webhooks/standard-webhooks: libraries/python/tests/test_webhooks.py
# (test_sign_function) and libraries/javascript/src/webhook.test.ts ("sign function
# works"); the same values are in svix/svix-webhooks python/tests/test_webhooks.py.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def standard_headers(
    prefix: str = "webhook-", signature: str = STANDARD_SIGNATURE
) -> dict[str, str]:
    return {
        f"{prefix}id": STANDARD_ID,
        f"{prefix}timestamp": str(STANDARD_TIMESTAMP),
        f"{prefix}signature": signature,
    }


@pytest.mark.parametrize("kind", ["standard", "incidentio"])
@pytest.mark.parametrize("prefix", ["webhook-", "svix-"])
@pytest.mark.parametrize("secret", [STANDARD_SECRET, STANDARD_SECRET.removeprefix("whsec_")])
def test_standard_webhooks_reference_vector_verifies(kind: str, prefix: str, secret: str) -> None:
    got = check(
        kind, standard_headers(prefix), STANDARD_BODY, [secret], now=at_unix(STANDARD_TIMESTAMP)
    )
    assert got == verify.Verified(
        kind=kind,  # type: ignore[arg-type]
        delivery_id=STANDARD_ID,
        sent_at=at_unix(STANDARD_TIMESTAMP),
    )


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        # test_invalid_signature_raises_error (Python, and Svix's): one character off.
        (
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "webhook-signature: does not match",
        ),
        # "invalid signature throws error" (JS): not a 32-byte base64 digest.
        (
            "v1,dawfeoifkpqwoekfpqoekf",
            "webhook-signature: malformed; expected v1,<base64>",
        ),
        # "partial signature throws error" (JS): the header cut to 8 characters, then "v1,".
        ("v1,g0hM9", "webhook-signature: malformed; expected v1,<base64>"),
        ("v1,", "webhook-signature: malformed; expected v1,<base64>"),
    ],
)
def test_standard_webhooks_reference_bad_signatures_are_refused(
    signature: str, message: str
) -> None:
    with pytest.raises(verify.SignatureRefused) as caught:
        check(
            "standard",
            standard_headers(signature=signature),
            STANDARD_BODY,
            [STANDARD_SECRET],
            now=at_unix(STANDARD_TIMESTAMP),
        )
    assert str(caught.value) == message


def test_standard_webhooks_reference_multi_signature_header_verifies() -> None:
    # test_multi_sig_payload_is_valid: decoys (one of another version) around the valid one.
    decoys = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    header = (
        f"{decoys} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {STANDARD_SIGNATURE} {decoys}"
    )
    got = check(
        "standard",
        standard_headers(signature=header),
        STANDARD_BODY,
        [STANDARD_SECRET],
        now=at_unix(STANDARD_TIMESTAMP),
    )
    assert got.delivery_id == STANDARD_ID


# --- Refusals, one reason each ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_body_is_refused(kind: str) -> None:
    headers = sign(kind, BODY, KEY_A)
    message = refused(kind, headers, BODY.replace(b"evt_1", b"evt_2"), [shown(kind, KEY_A)])
    assert message == f"{SIGNATURE_HEADER[kind]}: does not match"


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_secret_is_refused(kind: str) -> None:
    message = refused(kind, sign(kind, BODY, KEY_A), BODY, [shown(kind, KEY_B)])
    assert message == f"{SIGNATURE_HEADER[kind]}: does not match"


@pytest.mark.parametrize("kind", TIMED)
def test_stale_timestamp_is_refused(kind: str) -> None:
    headers = sign(kind, BODY, KEY_A, at=NOW_S - TOLERANCE_S - 100)
    header, lead = TIMESTAMP_AT[kind]
    message = refused(kind, headers, BODY, [shown(kind, KEY_A)])
    assert message == f"{header}: {lead}400 s old; at most 300 s allowed"


@pytest.mark.parametrize("kind", TIMED)
def test_future_timestamp_beyond_tolerance_is_refused(kind: str) -> None:
    headers = sign(kind, BODY, KEY_A, at=NOW_S + TOLERANCE_S + 1)
    header, lead = TIMESTAMP_AT[kind]
    message = refused(kind, headers, BODY, [shown(kind, KEY_A)])
    assert message == f"{header}: {lead}301 s in the future; at most 300 s allowed"


@pytest.mark.parametrize("kind", TIMED)
@pytest.mark.parametrize("offset_s", [-TOLERANCE_S, TOLERANCE_S])
def test_timestamp_exactly_at_the_tolerance_passes(kind: str, offset_s: int) -> None:
    headers = sign(kind, BODY, KEY_A, at=NOW_S + offset_s)
    got = check(kind, headers, BODY, [shown(kind, KEY_A)])
    assert got.sent_at == at_unix(NOW_S + offset_s)


@pytest.mark.parametrize(
    ("kind", "header"),
    [
        ("slack", "X-Slack-Signature"),
        ("slack", "X-Slack-Request-Timestamp"),
        ("github", "X-Hub-Signature-256"),
        ("pagerduty", "X-PagerDuty-Signature"),
        ("stripe", "Stripe-Signature"),
        ("standard", "webhook-id"),
        ("standard", "webhook-timestamp"),
        ("standard", "webhook-signature"),
        ("incidentio", "webhook-signature"),
        ("generic-hmac", "X-Signature"),
        ("generic-hmac", "X-Timestamp"),
    ],
)
def test_missing_header_is_refused(kind: str, header: str) -> None:
    headers = sign(kind, BODY, KEY_A)
    del headers[header]
    assert refused(kind, headers, BODY, [shown(kind, KEY_A)]) == f"{header}: missing"


def test_blank_header_counts_as_missing() -> None:
    headers = {**sign("slack", BODY, KEY_A), "X-Slack-Signature": "  "}
    assert refused("slack", headers, BODY, [KEY_A]) == "X-Slack-Signature: missing"


def test_github_sha1_signature_alone_is_not_accepted() -> None:
    headers = {"X-Hub-Signature": "sha1=" + hmac.new(KEY_A, BODY, "sha1").hexdigest()}
    assert refused("github", headers, BODY, [KEY_A]) == "X-Hub-Signature-256: missing"


def test_svix_prefix_missing_header_is_named_with_its_prefix() -> None:
    headers = {k.replace("webhook-", "svix-"): v for k, v in sign("standard", BODY, KEY_A).items()}
    del headers["svix-id"]
    assert refused("standard", headers, BODY, [shown("standard", KEY_A)]) == "svix-id: missing"


HEX64 = "ab" * 32
NOT_A_TIME = "not a Unix time in whole seconds"


@pytest.mark.parametrize(
    ("kind", "header", "value", "message"),
    [
        ("slack", "X-Slack-Signature", "v0=" + "zz" * 32, "malformed; expected v0=<64 hex digits>"),
        ("slack", "X-Slack-Signature", HEX64, "malformed; expected v0=<64 hex digits>"),
        ("slack", "X-Slack-Signature", "v0=" + "ab" * 31, "malformed; expected v0=<64 hex digits>"),
        ("slack", "X-Slack-Request-Timestamp", "soon", NOT_A_TIME),
        ("slack", "X-Slack-Request-Timestamp", f"{NOW_S}.5", NOT_A_TIME),
        ("slack", "X-Slack-Request-Timestamp", "-1", NOT_A_TIME),
        # Arabic-Indic digits: int() reads them, a Unix time has none.
        ("slack", "X-Slack-Request-Timestamp", "١٧٩٦٠٠٠٠٠٠", NOT_A_TIME),
        (
            "github",
            "X-Hub-Signature-256",
            "sha1=" + "ab" * 20,
            "malformed; expected sha256=<64 hex digits>",
        ),
        (
            "github",
            "X-Hub-Signature-256",
            "sha256=" + "g" * 64,
            "malformed; expected sha256=<64 hex digits>",
        ),
        (
            "pagerduty",
            "X-PagerDuty-Signature",
            HEX64,
            "no v1 signature; expected v1=<64 hex digits>[,v1=…]",
        ),
        (
            "pagerduty",
            "X-PagerDuty-Signature",
            "v0=" + HEX64,
            "no v1 signature; expected v1=<64 hex digits>[,v1=…]",
        ),
        (
            "pagerduty",
            "X-PagerDuty-Signature",
            "v1=nothex",
            "malformed; expected v1=<64 hex digits>[,v1=…]",
        ),
        ("stripe", "Stripe-Signature", f"v1={HEX64}", "expected exactly one t=<Unix time>"),
        (
            "stripe",
            "Stripe-Signature",
            f"t={NOW_S},t={NOW_S},v1={HEX64}",
            "expected exactly one t=<Unix time>",
        ),
        ("stripe", "Stripe-Signature", f"t=soon,v1={HEX64}", f"t= is {NOT_A_TIME}"),
        (
            "stripe",
            "Stripe-Signature",
            f"t={NOW_S}",
            "no v1 signature; expected v1=<64 hex digits>",
        ),
        (
            "stripe",
            "Stripe-Signature",
            f"t={NOW_S},v0={HEX64}",
            "no v1 signature; expected v1=<64 hex digits>",
        ),
        (
            "stripe",
            "Stripe-Signature",
            f"t={NOW_S},v1=nothex",
            "malformed; expected v1=<64 hex digits>",
        ),
        ("stripe", "Stripe-Signature", "garbage", "expected exactly one t=<Unix time>"),
        ("standard", "webhook-signature", "v1,!!not*base64!!", "malformed; expected v1,<base64>"),
        (
            "standard",
            "webhook-signature",
            "v1a,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            "no v1 signature; expected v1,<base64> [v1,<base64> …]",
        ),
        ("standard", "webhook-timestamp", "hello", NOT_A_TIME),
        ("generic-hmac", "X-Signature", "AAAA", "malformed; expected sha512=<base64 HMAC-SHA512>"),
        (
            "generic-hmac",
            "X-Signature",
            "sha512=@@@@",
            "malformed; expected sha512=<base64 HMAC-SHA512>",
        ),
        ("generic-hmac", "X-Timestamp", "yesterday", NOT_A_TIME),
    ],
)
def test_malformed_header_is_refused(kind: str, header: str, value: str, message: str) -> None:
    headers = {**sign(kind, BODY, KEY_A), header: value}
    assert refused(kind, headers, BODY, [shown(kind, KEY_A)]) == f"{header}: {message}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_secret_that_matches_passes(kind: str) -> None:
    # Rotation: the sender already signs with the new secret B; A is still configured.
    got = check(kind, sign(kind, BODY, KEY_B), BODY, [shown(kind, KEY_A), shown(kind, KEY_B)])
    assert got.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_empty_secret_list_is_refused(kind: str) -> None:
    message = refused(kind, sign(kind, BODY, KEY_A), BODY, [])
    assert message == f"{SIGNATURE_HEADER[kind]}: no secret configured to check it against"


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_secret_is_refused(kind: str) -> None:
    # HMAC with an empty key is something anyone can compute.
    empty: bytes | str = "whsec_" if kind in ("standard", "incidentio") else ""
    message = refused(kind, sign(kind, BODY, KEY_A), BODY, [shown(kind, KEY_A), empty])
    assert message == f"{SIGNATURE_HEADER[kind]}: secret 2 is empty"


def test_a_standard_secret_that_is_not_base64_is_refused() -> None:
    message = refused("standard", sign("standard", BODY, KEY_A), BODY, ["whsec_not base64!"])
    assert message == "webhook-signature: secret 1 is not whsec_<base64>"


@pytest.mark.parametrize("kind", KINDS)
def test_header_names_are_matched_whatever_their_case(kind: str) -> None:
    headers = {name.upper(): value for name, value in sign(kind, BODY, KEY_A).items()}
    assert check(kind, headers, BODY, [shown(kind, KEY_A)]).kind == kind


def test_generic_hmac_needs_its_settings_and_only_it_takes_them() -> None:
    with pytest.raises(ValueError, match="generic-hmac"):
        verify.verify(
            "generic-hmac", headers={}, body=b"", secrets=[KEY_A], now=NOW, tolerance_s=300
        )
    with pytest.raises(ValueError, match="generic-hmac"):
        check("slack", sign("slack", BODY, KEY_A), BODY, [KEY_A], hmac_settings=GENERIC)


def test_generic_hmac_without_timestamp_header_signs_the_body_alone() -> None:
    settings = webhook.GenericHmac(header="X-Sig", algorithm="sha256", encoding="hex")
    headers = {"X-Sig": _hex(KEY_A, BODY)}
    assert check("generic-hmac", headers, BODY, [KEY_A], hmac_settings=settings).sent_at is None
    message = refused_with(settings, {"X-Sig": _hex(KEY_A, f"{NOW_S}.".encode() + BODY)})
    assert message == "X-Sig: does not match"


def refused_with(settings: webhook.GenericHmac, headers: dict[str, str]) -> str:
    with pytest.raises(verify.SignatureRefused) as caught:
        check("generic-hmac", headers, BODY, [KEY_A], hmac_settings=settings)
    return str(caught.value)


def test_refused_is_an_unauthorized_error_naming_the_header() -> None:
    with pytest.raises(errors.Unauthorized) as caught:
        check("github", {"X-Hub-Signature-256": GITHUB_SIGNATURE}, b"x", [GITHUB_SECRET])
    assert isinstance(caught.value, verify.SignatureRefused)
    assert (caught.value.header, caught.value.reason) == ("X-Hub-Signature-256", "does not match")
    assert caught.value.status_code == 401


# --- What a verified request says: ids, event types, handshakes -----------------------------

# Slack's url_verification example: https://api.slack.com/events/url_verification
SLACK_CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
SLACK_URL_VERIFICATION = json.dumps(
    {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": SLACK_CHALLENGE, "type": "url_verification"}
).encode()


def test_slack_url_verification_is_answered_with_the_challenge() -> None:
    headers = sign("slack", SLACK_URL_VERIFICATION, KEY_A)
    got = check("slack", headers, SLACK_URL_VERIFICATION, [KEY_A])
    assert (got.handshake, got.event_type) == (SLACK_CHALLENGE, "url_verification")


def test_slack_url_verification_with_a_bad_signature_gets_no_answer() -> None:
    headers = sign("slack", SLACK_URL_VERIFICATION, KEY_B)
    message = refused("slack", headers, SLACK_URL_VERIFICATION, [KEY_A])
    assert message == "X-Slack-Signature: does not match"


def test_slack_event_callback_carries_its_event_id_and_inner_type() -> None:
    body = json.dumps(
        {"type": "event_callback", "event_id": "Ev9UQ52YNA", "event": {"type": "app_mention"}}
    ).encode()
    got = check("slack", sign("slack", body, KEY_A), body, [KEY_A])
    assert (got.delivery_id, got.event_type, got.handshake) == ("Ev9UQ52YNA", "app_mention", None)


def test_github_ping_is_answered_with_pong() -> None:
    headers = {**sign("github", BODY, KEY_A), "X-GitHub-Event": "ping"}
    assert check("github", headers, BODY, [KEY_A]).handshake == "pong"


def test_pagerduty_test_ping_is_answered_with_pong() -> None:
    body = b'{"event":{"id":"01FKZOXA868SHYEE4DVNWB5P9W","event_type":"pagey.ping"}}'
    got = check("pagerduty", sign("pagerduty", body, KEY_A), body, [KEY_A])
    assert (got.handshake, got.delivery_id) == ("pong", "01FKZOXA868SHYEE4DVNWB5P9W")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # The Standard Webhooks spec's payload structure: `type`.
        ("standard", "contact.created"),
        # incident.io's payloads (https://docs.incident.io/api-reference/webhooks): `event_type`.
        ("incidentio", "public_incident.incident_created_v2"),
    ],
)
def test_standard_event_type_comes_from_the_senders_payload_field(kind: str, expected: str) -> None:
    body = b'{"type":"contact.created","event_type":"public_incident.incident_created_v2"}'
    got = check(kind, sign(kind, body, KEY_A), body, [shown(kind, KEY_A)])
    assert got.event_type == expected


def test_a_body_that_is_not_json_still_verifies_without_metadata() -> None:
    body = b"[" * 100_000  # too deep for the JSON parser: no id, no type, no crash
    got = check("stripe", sign("stripe", body, KEY_A), body, [KEY_A])
    assert (got.delivery_id, got.event_type) == (None, None)


# --- Properties -------------------------------------------------------------------------------

kinds = st.sampled_from(KINDS)
# Fixed-length keys: HMAC pads short keys with zero bytes, so b"k" and b"k\0" are one key.
keys = st.binary(min_size=32, max_size=32)


@given(kind=kinds, body=st.binary(max_size=512), key=st.binary(min_size=1, max_size=100))
def test_a_body_signed_with_a_secret_verifies(kind: str, body: bytes, key: bytes) -> None:
    assert check(kind, sign(kind, body, key), body, [shown(kind, key)]).kind == kind


@given(kind=kinds, body=st.binary(min_size=1, max_size=256), data=st.data())
def test_any_one_byte_change_of_the_body_fails(kind: str, body: bytes, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([byte]) + body[index + 1 :]
    message = refused(kind, sign(kind, body, KEY_A), changed, [shown(kind, KEY_A)])
    assert message == f"{SIGNATURE_HEADER[kind]}: does not match"


@given(kind=kinds, body=st.binary(max_size=256), a=keys, b=keys)
def test_signed_with_a_verifies_against_b_then_a(
    kind: str, body: bytes, a: bytes, b: bytes
) -> None:
    headers = sign(kind, body, a)
    assert check(kind, headers, body, [shown(kind, b), shown(kind, a)]).kind == kind
    if a != b:
        assert refused(kind, headers, body, [shown(kind, b)]).endswith("does not match")
