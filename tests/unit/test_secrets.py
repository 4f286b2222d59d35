"""Secrets without a server: sealing and opening, digests, the key check, redaction in
plans and documents, validation that never quotes a value, and references from tenants
turned into templates that carry names, never values."""

from __future__ import annotations

import base64
import datetime as dt
import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.auth import keys
from armillary.auth.secrets import Vault, seal
from armillary.control import plan, references
from armillary.errors import Invalid, PermanentError
from armillary.resources import kinds, loader
from armillary.resources.canonical import Canonical
from armillary.resources.secret import REDACTED, Secret
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.expand import expand
from armillary.runtime.instance import SecretEnv, template_from_json, template_to_json
from armillary.store.repository import Stored

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
VALUE = "hunter2-correct-horse"


def ring(current: bytes = KEY_A, *previous: bytes) -> keys.KeyRing:
    return keys.KeyRing(current=current, previous=previous)


def secret(data: dict[str, Any], *, name: str = "db", tenant: str | None = None) -> Secret:
    spec: dict[str, Any] = {"data": data}
    if tenant is not None:
        spec["tenant"] = tenant
    document = {"apiVersion": "armillary.dev/v1", "kind": "Secret", "metadata": {"name": name}}
    resource = Secret.model_validate({**document, "spec": spec})
    return resource


# --- sealing and opening ----------------------------------------------------------------


def test_a_sealed_secret_opens_to_its_values_and_holds_none_in_clear() -> None:
    vault = Vault.of(ring())
    token = vault.seal({"PASSWORD": VALUE, "USER": "app"})
    assert VALUE not in token and VALUE not in base64.urlsafe_b64decode(token).decode("latin-1")
    assert vault.open(token, name="db") == {"PASSWORD": VALUE, "USER": "app"}


def test_the_same_values_seal_differently_each_time() -> None:
    vault = Vault.of(ring())
    assert vault.seal({"A": VALUE}) != vault.seal({"A": VALUE})


def test_a_token_of_another_key_is_a_clear_error_without_the_value() -> None:
    token = Vault.of(ring(KEY_A)).seal({"A": VALUE})
    with pytest.raises(PermanentError, match="ARMILLARY_SECRET_KEY") as caught:
        Vault.of(ring(KEY_B)).open(token, name="db")
    assert VALUE not in str(caught.value) and "'db'" in str(caught.value)


def test_a_previous_key_still_opens_what_it_sealed() -> None:
    token = Vault.of(ring(KEY_A)).seal({"A": VALUE})
    assert Vault.of(ring(KEY_B, KEY_A)).open(token, name="db") == {"A": VALUE}


def test_the_key_check_names_which_key_made_it() -> None:
    old = Vault.of(ring(KEY_A)).check_token()
    assert Vault.of(ring(KEY_A)).key_of(old) == 0
    assert Vault.of(ring(KEY_B, KEY_A)).key_of(old) == 1
    assert Vault.of(ring(KEY_B)).key_of(old) is None
    assert Vault.of(ring(KEY_A)).key_of(Vault.of(ring(KEY_A)).seal({"A": "b"})) is None


def test_the_vault_never_shows_its_keys() -> None:
    vault = Vault.of(ring())
    text = repr(vault)
    for derived in (keys.derive(KEY_A, "secrets"), keys.derive(KEY_A, "secret-digests")):
        assert derived.hex() not in text and base64.urlsafe_b64encode(derived).decode() not in text


@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True), st.text()))
def test_seal_then_open_is_the_identity(data: dict[str, str]) -> None:
    vault = Vault.of(ring())
    assert vault.open(vault.seal(data), name="x") == data


# --- digests -----------------------------------------------------------------------------


def test_digests_are_keyed_and_depend_on_name_key_and_value() -> None:
    vault = Vault.of(ring())
    digest = vault.digests("db", {"A": VALUE})["A"]
    assert digest.startswith("hmac-sha256:") and VALUE not in digest
    assert vault.digests("db", {"A": VALUE})["A"] == digest
    assert vault.digests("db", {"A": VALUE + "!"})["A"] != digest
    assert vault.digests("other", {"A": VALUE})["A"] != digest
    assert vault.digests("db", {"B": VALUE})["B"] != digest
    assert Vault.of(ring(KEY_B)).digests("db", {"A": VALUE})["A"] != digest


def test_a_sealed_document_keeps_digests_only_and_compares_equal_when_unchanged() -> None:
    vault = Vault.of(ring())
    first, token = seal(vault, secret({"PASSWORD": VALUE}, tenant="acme"))
    again, token_again = seal(vault, secret({"PASSWORD": VALUE}, tenant="acme"))
    assert VALUE not in repr(first) and first.spec["tenant"] == "acme"
    assert first == again and token != token_again
    assert plan.compute([again], {("Secret", "db"): first})[0].action == "unchanged"
    assert vault.open(token, name="db") == {"PASSWORD": VALUE}


# --- redaction in plans and documents ------------------------------------------------------


def test_a_plan_names_the_changed_keys_and_shows_no_value() -> None:
    vault = Vault.of(ring())
    stored, _ = seal(vault, secret({"PASSWORD": "old-value", "GONE": "bye-value"}))
    desired, _ = seal(vault, secret({"PASSWORD": VALUE, "NEW": "hello-value"}, tenant="acme"))
    [change] = plan.compute([desired], {("Secret", "db"): stored})
    assert change.action == "update" and change.spec_changed
    fields = {f.path: f for f in change.fields}
    assert set(fields) == {"spec.tenant", "spec.data.PASSWORD", "spec.data.GONE", "spec.data.NEW"}
    assert (fields["spec.data.PASSWORD"].before, fields["spec.data.PASSWORD"].after) == (
        REDACTED,
        REDACTED,
    )
    assert fields["spec.data.NEW"].added and fields["spec.data.NEW"].after == REDACTED
    assert fields["spec.data.GONE"].removed and fields["spec.data.GONE"].before == REDACTED
    assert fields["spec.tenant"].after == "acme"  # not secret: shown as it is
    text = repr(change)
    for secret_text in ("old-value", "bye-value", VALUE, "hello-value", "hmac-sha256"):
        assert secret_text not in text


def test_a_stored_secret_shows_redacted_values_and_its_keys() -> None:
    vault = Vault.of(ring())
    sealed, _ = seal(vault, secret({"PASSWORD": VALUE, "USER": "app"}))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    stored = Stored(
        kind="Secret",
        name="db",
        uid="u",
        generation=1,
        resource_version=1,
        labels={},
        annotations={},
        spec=sealed.spec,
        status={},
        created_at=now,
        updated_at=now,
    )
    assert stored.document()["spec"] == {"data": {"PASSWORD": REDACTED, "USER": REDACTED}}
    assert stored.canonical().spec == sealed.spec  # plan still compares the digests


def test_only_the_secret_kind_hides_anything() -> None:
    assert [k.name for k in kinds.KINDS if k.sensitive] == ["Secret"]
    secret_kind = kinds.BY_NAME["Secret"]
    assert secret_kind.hides("spec.data") and secret_kind.hides("spec.data.A")
    assert not secret_kind.hides("spec.tenant") and not secret_kind.hides("spec.database")


# --- validation never quotes a value ------------------------------------------------------


def load_secret(body: str) -> Invalid:
    text = "apiVersion: armillary.dev/v1\nkind: Secret\nmetadata:\n  name: db\nspec:\n" + body
    with pytest.raises(Invalid) as caught:
        loader.load_text(text, file="s.yaml")
    return caught.value


@pytest.mark.parametrize(
    ("body", "path", "line", "fragment"),
    [
        ("  data:\n    PASSWORD: 987654321\n", "spec.data.PASSWORD", 7, "valid string"),
        ("  data:\n    PASSWORD: true\n", "spec.data.PASSWORD", 7, "valid string"),
        ("  data:\n    PASSWORD: <redacted>\n", "spec.data.PASSWORD", 7, "placeholder"),
        ('  data:\n    PASSWORD: "a\\0b987654321"\n', "spec.data.PASSWORD", 7, "NUL"),
        ("  data: 987654321\n", "spec.data", 6, "valid dictionary"),
        ("  data: {}\n", "spec.data", 6, "at least 1"),
        ("  data:\n    9BAD: x\n", 'spec.data["9BAD"]', 7, "environment variable name"),
        ("  tenant: Acme\n  data: {A: '987654321'}\n", "spec.tenant", 6, "DNS-1123"),
    ],
)
def test_a_bad_secret_is_reported_at_its_place_without_its_value(
    body: str, path: str, line: int, fragment: str
) -> None:
    error = load_secret(body)
    [issue] = error.issues
    assert (issue.path, issue.file, issue.line) == (path, "s.yaml", line)
    assert fragment in issue.message
    assert "987654321" not in str(error)


def test_a_duplicate_key_in_yaml_is_reported_without_either_value() -> None:
    error = load_secret("  data:\n    PASSWORD: first-987654321\n    PASSWORD: second-987654321\n")
    assert "duplicate key" in str(error) and "987654321" not in str(error)


# --- tenants use secrets by name ---------------------------------------------------------

STACK = textwrap.dedent("""\
    apiVersion: armillary.dev/v1
    kind: Stack
    metadata: {name: s}
    spec:
      components:
        - {name: agent, command: [python3, agent.py]}
        - {name: web, command: [python3, web.py]}
    """)


def tenant(secrets: str) -> Tenant:
    text = textwrap.dedent(f"""\
        apiVersion: armillary.dev/v1
        kind: Tenant
        metadata: {{name: acme}}
        spec: {{org: o, stack: s, secrets: {secrets}}}
        """)
    resource = loader.load_text(text)[0].resource
    assert isinstance(resource, Tenant)
    return resource


def stack() -> Stack:
    resource = loader.load_text(STACK)[0].resource
    assert isinstance(resource, Stack)
    return resource


def test_templates_carry_secret_names_and_versions_never_values() -> None:
    uses = "[{name: db}, {name: slack, prefix: SLACK_, components: [agent]}]"
    instance = expand(tenant(uses), stack(), {}, {"db": "u1/1", "slack": "u2/3"})
    agent, web = instance.templates
    assert agent.secrets == (
        SecretEnv(secret="db", version="u1/1"),
        SecretEnv(secret="slack", prefix="SLACK_", version="u2/3"),
    )
    assert web.secrets == (SecretEnv(secret="db", version="u1/1"),)
    assert agent.problem is None and agent.env == {}
    assert template_from_json(template_to_json(agent)) == agent


def test_a_new_secret_version_is_a_new_spec_hash_and_no_secret_keeps_old_hashes() -> None:
    plain = expand(tenant("[]"), stack()).templates[0]
    first = expand(tenant("[{name: db}]"), stack(), {}, {"db": "u1/1"}).templates[0]
    second = expand(tenant("[{name: db}]"), stack(), {}, {"db": "u1/2"}).templates[0]
    assert len({plain.spec_hash(), first.spec_hash(), second.spec_hash()}) == 3
    unchanged = expand(tenant("[]"), stack(), {}, {"db": "u1/2"}).templates[0]
    assert unchanged.spec_hash() == plain.spec_hash()


def test_a_secret_the_tenant_may_not_have_is_a_problem_of_the_components_using_it() -> None:
    instance = expand(tenant("[{name: db, components: [web]}]"), stack(), {}, {})
    agent, web = instance.templates
    assert agent.problem is None
    assert web.problem is not None and "secret 'db' does not exist" in web.problem


def test_the_same_secret_twice_with_one_prefix_is_refused() -> None:
    with pytest.raises(Invalid, match=r"spec\.secrets\[1\]\.name: secret 'db' is named twice"):
        tenant("[{name: db}, {name: db}]")


def canonical_tenant(name: str, *uses: str) -> Canonical:
    spec = {"org": "o", "stack": "s", "secrets": [{"name": u} for u in uses]}
    return Canonical(kind="Tenant", name=name, spec=spec, labels={}, annotations={})


def test_apply_refuses_a_tenant_using_a_missing_or_foreign_secret() -> None:
    in_set = Canonical(kind="Secret", name="fresh", spec={"data": {}}, labels={}, annotations={})
    items = [canonical_tenant("acme", "shared", "own", "fresh", "theirs", "nowhere"), in_set]
    stored = {"shared": None, "own": "acme", "theirs": "globex"}
    issues = references.unusable_secrets(items, stored=stored)
    assert [(i.path, i.document) for i in issues] == [
        ("spec.secrets[3].name", 0),
        ("spec.secrets[4].name", 0),
    ]
    assert "belongs to tenant 'globex'" in issues[0].message
    assert "does not exist" in issues[1].message
