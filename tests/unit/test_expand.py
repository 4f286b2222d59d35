"""expand(): tenant × stack → templates; env layering, overrides, hashes."""

from __future__ import annotations

import textwrap

from armillary.resources import loader
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.expand import expand
from armillary.runtime.instance import template_from_json, template_to_json

STACK = textwrap.dedent("""\
    apiVersion: armillary.dev/v1
    kind: Stack
    metadata: {name: s}
    spec:
      components:
        - name: agent
          command: [python3, agent.py]
          args: [--fast]
          env: {A: stack, B: stack}
          replicas: 1
          resources: {cpu: 250m, memory: 128Mi}
        - name: web
          command: "echo hi"
          args: [one]
        - name: img
          image: registry.example/agent:1
    """)


def load(text: str) -> object:
    return loader.load_text(text)[0].resource


def tenant(overrides: str = "{}") -> Tenant:
    return load(
        textwrap.dedent(f"""\
        apiVersion: armillary.dev/v1
        kind: Tenant
        metadata: {{name: acme}}
        spec:
          org: o
          stack: s
          env: {{B: tenant, C: tenant}}
          overrides: {overrides}
        """)
    )  # type: ignore[return-value]


def test_env_is_layered_and_overrides_apply() -> None:
    stack = load(STACK)
    assert isinstance(stack, Stack)
    instance = expand(tenant("{agent: {replicas: 3, env: {C: override}}}"), stack)
    agent = instance.templates[0]
    assert agent.env == {"A": "stack", "B": "tenant", "C": "override"}
    assert agent.replicas == 3
    assert agent.command == ("python3", "agent.py", "--fast")
    assert (agent.cpu_millicores, agent.memory_mb) == (250, 128)
    assert agent.restart["policy"] == "always"


def test_string_commands_run_under_sh_with_args() -> None:
    web = expand(tenant(), load(STACK)).templates[1]  # type: ignore[arg-type]
    assert web.command == ("sh", "-c", 'echo hi "$@"', "sh", "one")


def test_images_cannot_run_on_nodes_and_say_so() -> None:
    img = expand(tenant(), load(STACK)).templates[2]  # type: ignore[arg-type]
    assert img.problem is not None and "image registry.example/agent:1" in img.problem


def test_hash_moves_with_the_process_shape_not_the_replica_count() -> None:
    stack = load(STACK)
    one = expand(tenant("{agent: {replicas: 1}}"), stack).templates[0]  # type: ignore[arg-type]
    three = expand(tenant("{agent: {replicas: 3}}"), stack).templates[0]  # type: ignore[arg-type]
    changed = expand(tenant("{agent: {env: {X: y}}}"), stack).templates[0]  # type: ignore[arg-type]
    assert one.spec_hash() == three.spec_hash()
    assert one.spec_hash() != changed.spec_hash()
    assert one.spec_hash() != one.spec_hash({"AGENT_URL": "http://x"})


def test_node_labels_reach_the_template_and_a_new_selector_moves_the_hash() -> None:
    stack = load(STACK)
    assert isinstance(stack, Stack)
    plain = expand(tenant(), stack).templates[0]
    assert plain.node_labels == {}
    pinned = load(STACK.replace("replicas: 1", "replicas: 1\n      node_labels: {zone: eu}"))
    assert isinstance(pinned, Stack)
    eu = expand(tenant(), pinned).templates[0]
    assert eu.node_labels == {"zone": "eu"}
    assert eu.spec_hash() != plain.spec_hash()  # a new selector moves the replicas
    assert template_from_json(template_to_json(eu)) == eu


RELEASE = textwrap.dedent("""\
    apiVersion: armillary.dev/v1
    kind: Release
    metadata: {name: agent-1.0.0}
    spec:
      component: agent
      version: 1.0.0
      git: {tag: agent/v1.0.0, commit: 0123456789abcdef}
      artifact:
        image: {registry: r.example, repository: t/agent, tag: 1.0.0%s}
    """)
DIGEST = "sha256:" + "ab" * 32


def test_the_image_stays_on_the_template_for_a_container_runtime() -> None:
    stack = load(STACK)
    assert isinstance(stack, Stack)
    img = expand(tenant(), stack).templates[2]
    assert img.image == "registry.example/agent:1" and img.exposure == "internal"
    assert expand(tenant(), stack).templates[0].image is None  # a process
    assert template_from_json(template_to_json(img)) == img
    for suffix, expected in (("", "r.example/t/agent:1.0.0"), (f", digest: '{DIGEST}'", None)):
        record = load(RELEASE % suffix)
        pinned = expand(tenant("{agent: {release: agent@1.0.0}}"), stack, {"agent-1.0.0": record})  # type: ignore[dict-item]
        agent = pinned.templates[0]
        assert agent.problem is not None  # the nodes runtime still cannot run it
        assert agent.image == (expected or f"r.example/t/agent:1.0.0@{DIGEST}")
