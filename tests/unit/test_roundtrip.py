"""load(dump(r)) == r: what Armillary prints can be applied again and means the same;
and a document's canonical spec does not depend on whether defaults are spelled out.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from armillary.resources import canonical, kinds, loader
from armillary.resources.meta import Document

ORG = """\
apiVersion: armillary.dev/v1
kind: Org
metadata:
  name: acme
  labels:
    example.com/tier: gold
  annotations:
    note: "first customer: yes"
  resourceVersion: "7"
  generation: 3
  uid: 6f1c0a4e
  createdAt: "2026-11-22T10:00:00Z"
spec:
  display_name: ACME Corp.
status:
  ready: true
"""

STACK = """\
apiVersion: armillary.dev/v1
kind: Stack
metadata:
  name: support
spec:
  description: Support agents
  components:
    - name: db
      image: postgres:16
      ports:
        - name: pg
          port: 5432
          protocol: tcp
      health_check:
        tcp:
          port: pg
      resources:
        cpu: 0.5
        memory: 512Mi
    - name: agent
      release: agent@1.4.0-rc.1
      replicas: 3
      env:
        LOG_LEVEL: debug
        EMPTY: ""
      ports:
        - name: http
      health_check:
        http:
          path: /ready
          port: http
          expect_status: 204
        interval_s: 2.5
        failure_threshold: 5
      restart:
        policy: on-failure
        backoff_max_s: 30
      resources:
        cpu: 250m
        memory: 256
      exposure: public
      depends_on: [db]
      stop_grace_s: 0
    - name: worker
      command: python -m worker --queue "a b"
      args: [--verbose]
      cwd: /srv/worker
      health_check:
        exec:
          command: [test, -f, /tmp/ok]
      timeout_s: 30
"""

STACK_WITH_JOB = """\
apiVersion: armillary.dev/v1
kind: Stack
metadata:
  name: support
spec:
  components:
    - name: seed
      type: job
      command: [python, -m, seed]
"""

RELEASE = """\
apiVersion: armillary.dev/v1
kind: Release
metadata:
  name: agent-1.4.0
spec:
  component: agent
  version: 1.4.0
  git:
    tag: agent/v1.4.0
    commit: 0a1b2c3d4e5f
    repository: https://example.com/agent.git
  artifact:
    image:
      registry: registry.example.com
      repository: acme/agent
      tag: 1.4.0
      digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
  notes: first cut
"""

TENANT = """\
apiVersion: armillary.dev/v1
kind: Tenant
metadata:
  name: acme-support
spec:
  org: acme
  stack: support
  display_name: ACME support team
  env:
    REGION: eu
  overrides:
    agent:
      replicas: 0
      env:
        LOG_LEVEL: info
      release: agent@1.3.2
  routing:
    slack: [T01ABC, T02DEF]
    github: ["12345"]
  schedules:
    - name: nightly-seed
      component: seed
      cron: "0 3 * * 1-5"
      time_zone: Europe/Paris
      concurrency_policy: Replace
      starting_deadline_s: 600
      history_limit: 0
      suspend: true
"""

SCHEDULE = """\
apiVersion: armillary.dev/v1
kind: Schedule
metadata:
  name: weekly-report
spec:
  tenant: acme-support
  component: report
  cron: "@weekly"
  time_zone: America/New_York
  concurrency_policy: Allow
"""

WEBHOOK = """\
apiVersion: armillary.dev/v1
kind: WebhookSource
metadata:
  name: hooks
spec:
  type: generic-hmac
  secrets:
    - name: hooks-signing
    - name: hooks-signing-next
      key: v2
  routing:
    key_space: hooks
    pointer: /team/id~1x
  tolerance_s: 60
  max_body_bytes: 65536
  rate_limit:
    per_second: 0.5
    burst: 10
  tenant_rate_limit:
    per_second: 100
    burst: 200
  hmac:
    header: X-Signature
    algorithm: sha512
    encoding: base64
    prefix: "sha512="
    timestamp_header: X-Timestamp
"""

DOCUMENTS = [
    pytest.param(ORG, id="Org"),
    pytest.param(STACK, id="Stack"),
    pytest.param(STACK_WITH_JOB, id="Stack-with-job"),
    pytest.param(RELEASE, id="Release"),
    pytest.param(TENANT, id="Tenant"),
    pytest.param(SCHEDULE, id="Schedule"),
    pytest.param(WEBHOOK, id="WebhookSource"),
]


def load_one(text: str) -> Document:  # type: ignore[type-arg]
    [loaded] = loader.load_text(text, file="x.yaml")
    return loaded.resource


def dump(resource: Document) -> str:  # type: ignore[type-arg]
    data = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@pytest.mark.parametrize("text", DOCUMENTS)
def test_load_dump_load_gives_the_same_resource(text: str) -> None:
    resource = load_one(text)

    again = load_one(dump(resource))

    assert again == resource
    assert again.spec_dict() == resource.spec_dict()
    assert canonical.of(again) == canonical.of(resource)


@pytest.mark.parametrize("text", [ORG, STACK, STACK_WITH_JOB, RELEASE, TENANT, SCHEDULE, WEBHOOK])
def test_expanded_spec_means_the_same_as_the_canonical_one(text: str) -> None:
    # plan.compute diffs specs with defaults spelled out (Kind.expand); that must not
    # add or lose meaning.
    resource = load_one(text)
    kind = kinds.BY_NAME[resource.kind]

    expanded = kind.expand(resource.spec_dict())

    assert type(resource.spec).model_validate(expanded) == resource.spec


# --- defaults spelled out or left out -------------------------------------------------------


def with_spec(text: str, spec: str) -> str:
    head = text.split("\nspec:", 1)[0]
    return head + "\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


SAME_MEANING = [
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Org\nmetadata:\n  name: acme\nspec: {}\n",
        """\
        display_name: ""
        description: ""
        """,
        id="Org",
    ),
    pytest.param(
        STACK_WITH_JOB.replace("      type: job\n", ""),
        """\
        description: ""
        components:
          - name: seed
            type: service
            command: [python, -m, seed]
            args: []
            env: {}
            ports: []
            replicas: 1
            restart:
              backoff_initial_s: 0.5
              backoff_max_s: 60
              crash_loop_after: 5
            resources: {}
            exposure: internal
            depends_on: []
            stop_grace_s: 10.0
        """,
        id="Stack-service",
    ),
    pytest.param(
        STACK.split("    - name: db")[0]
        + "    - name: agent\n      command: [agent]\n      health_check:\n        http: {}\n",
        """\
        description: Support agents
        components:
          - name: agent
            command: [agent]
            health_check:
              http:
                path: /healthz
              interval_s: 10
              timeout_s: 2
              start_period_s: 0
              success_threshold: 1
              failure_threshold: 3
        """,
        id="Stack-health-check",
    ),
    pytest.param(
        STACK_WITH_JOB,
        """\
        components:
          - name: seed
            type: job
            command: [python, -m, seed]
            replicas: 1
        """,
        id="Stack-job-replicas",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: Tenant\nmetadata:\n  name: t\nspec:\n"
        "  org: acme\n  stack: support\n  schedules:\n"
        "    - name: n\n      component: seed\n      cron: '@daily'\n",
        """\
        org: acme
        stack: support
        display_name: ""
        env: {}
        overrides: {}
        routing: {}
        schedules:
          - name: n
            component: seed
            cron: '@daily'
            time_zone: UTC
            concurrency_policy: Forbid
            history_limit: 10
            suspend: false
        """,
        id="Tenant",
    ),
    pytest.param(
        SCHEDULE.replace("  time_zone: America/New_York\n  concurrency_policy: Allow\n", ""),
        """\
        tenant: acme-support
        component: report
        cron: "@weekly"
        time_zone: UTC
        concurrency_policy: Forbid
        history_limit: 10
        suspend: false
        """,
        id="Schedule",
    ),
    pytest.param(
        "apiVersion: armillary.dev/v1\nkind: WebhookSource\nmetadata:\n  name: hooks\nspec:\n"
        "  type: github\n  secrets: [{name: gh}]\n  routing: {key_space: github}\n",
        """\
        type: github
        secrets:
          - name: gh
            key: value
        routing:
          key_space: github
        tolerance_s: 300
        max_body_bytes: 1048576
        """,
        id="WebhookSource",
    ),
]


@pytest.mark.parametrize(("minimal", "spelled_out_spec"), SAME_MEANING)
def test_spec_dict_is_the_same_with_defaults_spelled_out(
    minimal: str, spelled_out_spec: str
) -> None:
    left_out = load_one(minimal)
    spelled_out = load_one(with_spec(minimal, spelled_out_spec))

    assert spelled_out.spec_dict() == left_out.spec_dict()
    assert canonical.of(spelled_out) == canonical.of(left_out)


def test_spec_dict_leaves_defaults_out() -> None:
    resource = load_one(SCHEDULE.replace("  concurrency_policy: Allow\n", ""))

    assert resource.spec_dict() == {
        "tenant": "acme-support",
        "component": "report",
        "cron": "@weekly",
        "time_zone": "America/New_York",
    }


# --- property: generated stacks and tenants -------------------------------------------------

dns = st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
# Any text but NEL (U+0085): ruamel's emitter turns it into a line break plus spaces.
# Strings users may store: no lone surrogate (Cs) nor NUL (see resources/text.py).
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x85\x00"), max_size=12)
cpu = st.one_of(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=64_000).map(lambda m: f"{m}m"),
)
memory = st.one_of(
    st.integers(min_value=1, max_value=65_536),
    st.sampled_from(["64Mi", "1Gi", "1.5Gi", "512M", "2G"]),
)


@st.composite
def components(draw: st.DrawFn, name: str) -> dict[str, Any]:
    component: dict[str, Any] = {"name": name}
    artifact = draw(st.sampled_from(["command", "image", "release"]))
    if artifact == "command":
        component["command"] = draw(st.lists(text.filter(bool), min_size=1, max_size=3))
    elif artifact == "image":
        component["image"] = draw(text.filter(bool))
    else:
        component["release"] = f"{name}@{draw(st.integers(0, 99))}.0.{draw(st.integers(0, 9))}"
    optional: dict[str, st.SearchStrategy[Any]] = {
        "replicas": st.integers(min_value=0, max_value=1000),
        "env": st.dictionaries(env_names, text, max_size=3),
        "resources": st.fixed_dictionaries({}, optional={"cpu": cpu, "memory": memory}),
        "exposure": st.sampled_from(["public", "internal"]),
        "stop_grace_s": st.floats(min_value=0, max_value=3600),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            component[key] = draw(strategy)
    return component


@st.composite
def stacks(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(dns, min_size=1, max_size=4, unique=True))
    comps = [draw(components(n)) for n in names]
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": draw(dns), "labels": draw(st.dictionaries(dns, dns, max_size=2))},
        "spec": {"description": draw(text), "components": comps},
    }


def to_yaml(data: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@settings(max_examples=60, deadline=None)
@given(stacks())
def test_generated_stacks_round_trip(document: dict[str, Any]) -> None:
    resource = load_one(to_yaml(document))

    again = load_one(dump(resource))

    assert again == resource
    assert canonical.of(again) == canonical.of(resource)
