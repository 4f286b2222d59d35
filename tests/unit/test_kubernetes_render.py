"""Kubernetes rendering: golden manifests, byte-stable output, schema validity on every
Kubernetes minor version kubernetes-validate ships from 1.29 to 1.37, and refusals of
names Kubernetes would reject, each at its path.

Goldens live in tests/unit/golden/kubernetes; `UPDATE_GOLDEN=1` rewrites them (review
the diff: it is the change users will see in their manifests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes_validate.utils import SchemaNotFoundError, all_versions
from ruamel.yaml import YAML

from armillary.resources import loader, naming, stack
from armillary.resources.meta import Document
from armillary.runtime.kubernetes import inputs, manifest, names, tenancy
from armillary.runtime.kubernetes.model import Cluster, Refusal, Unrenderable
from armillary.runtime.kubernetes.render import render

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "kubernetes"
EVERY_FIELD = ROOT / "examples" / "kubernetes"
HTTPROUTE = Cluster(
    ingress="httproute",
    domain="apps.initech.example",
    storage_class="fast-ssd",
    access_mode="ReadWriteMany",
    data_size="20Gi",
    gateway="public",
    gateway_namespace="gateways",
)
VERSIONS = sorted(
    {v for v in all_versions() if (1, 29) <= tuple(int(p) for p in v.split(".")[:2]) <= (1, 37)}
)

Doc = Document[Any]


def documents(path: Path) -> list[Doc]:
    return [item.resource for item in loader.load_paths([str(path)])]


def rendered(docs: list[Doc], cluster: Cluster | None = None) -> list[dict[str, Any]]:
    views, refusals = inputs.views(docs)
    assert refusals == []
    return render(views, cluster=cluster or Cluster())


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


def test_every_field_matches_its_golden_yaml() -> None:
    check_golden("every-field.yaml", manifest.to_yaml(rendered(documents(EVERY_FIELD))))


def test_every_field_with_httproute_matches_its_golden_json() -> None:
    text = manifest.to_json(rendered(documents(EVERY_FIELD), HTTPROUTE))
    check_golden("every-field-httproute.json", text)


def test_rendering_again_or_in_another_document_order_gives_the_same_bytes() -> None:
    docs = documents(EVERY_FIELD)
    first = manifest.to_yaml(rendered(docs))
    shuffled = list(docs)
    random.Random(7).shuffle(shuffled)
    assert manifest.to_yaml(rendered(docs)) == first
    assert manifest.to_yaml(rendered(shuffled)) == first
    assert manifest.to_json(rendered(shuffled)) == manifest.to_json(rendered(docs))


def test_the_versions_checked_span_1_29_to_1_37() -> None:
    assert VERSIONS[0].startswith("1.29") and VERSIONS[-1].startswith("1.37")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(version: str) -> None:
    objects = rendered(documents(EVERY_FIELD)) + rendered(documents(EVERY_FIELD), HTTPROUTE)
    unchecked = set()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError:
            unchecked.add(obj["kind"])  # a CRD: kubernetes-validate ships core schemas only
    assert unchecked == {"HTTPRoute"}


def test_members_carry_the_applyset_id_of_the_parent_and_it_lists_their_kinds() -> None:
    objects = rendered(documents(EVERY_FIELD))
    parents = [o for o in objects if "applyset.kubernetes.io/id" in o["metadata"]["labels"]]
    assert len(parents) == 1
    parent = parents[0]
    ns = naming.namespace_name("initech-support")
    assert parent["metadata"]["namespace"] == ns
    applyset = parent["metadata"]["labels"]["applyset.kubernetes.io/id"]
    # KEP-3659: applyset-<base64url(sha256("<name>.<namespace>.<kind>.<group>"))>-v1
    digest = hashlib.sha256(f"armillary-applyset.{ns}.ConfigMap.".encode()).digest()
    assert applyset == f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"
    members = [o for o in objects if o is not parent]
    assert {m["metadata"]["labels"]["applyset.kubernetes.io/part-of"] for m in members} == {
        applyset
    }
    kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
    assert kinds.split(",") == sorted({tenancy.group_kind(m) for m in members})
    assert parent["metadata"]["annotations"]["armillary.dev/secrets"] == "llm-keys,support-db"


def test_secret_values_are_never_rendered() -> None:
    text = manifest.to_yaml(rendered(documents(EVERY_FIELD)))
    assert "postgresql://example.invalid/support" not in text
    assert "kind: Secret" not in text


BASE = """
apiVersion: armillary.dev/v1
kind: Org
metadata: {name: acme}
spec: {}
---
apiVersion: armillary.dev/v1
kind: Tenant
metadata: {name: acme-support}
spec: {org: acme, stack: s}
---
apiVersion: armillary.dev/v1
kind: Stack
metadata: {name: s}
spec:
  components:
"""


def stack_docs(components: str, extra: str = "") -> list[Doc]:
    text = BASE + components + extra
    return [item.resource for item in loader.load_text(text, file="stack.yaml")]


def refusals_of(docs: list[Doc], cluster: Cluster | None = None) -> list[Refusal]:
    views, found = inputs.views(docs)
    try:
        render(views, cluster=cluster or Cluster())
    except Unrenderable as exc:
        return found + exc.refusals
    return found


def test_a_process_only_component_is_refused_at_its_path() -> None:
    docs = stack_docs("    - {name: api, command: [python3, app.py]}\n")
    [refusal] = refusals_of(docs)
    assert (refusal.kind, refusal.name, refusal.path) == (
        "Stack",
        "s",
        "spec.components[0].command",
    )
    assert "'api' runs a process" in refusal.message and "image" in refusal.message


@pytest.mark.parametrize(
    ("component", "path", "expected"),
    [
        (
            "{name: 1api, image: x/y:1, ports: [{name: http}]}",
            "spec.components[0].name",
            "DNS-1035",
        ),
        (
            "{name: api, image: x/y:1, ports: [{name: administration-port}]}",
            "spec.components[0].ports[0].name",
            "at most 15",
        ),
        ("{name: api, image: x/y:1, exposure: public}", "spec.components[0].exposure", "port"),
    ],
)
def test_names_kubernetes_would_reject_are_refused_at_their_path(
    component: str, path: str, expected: str
) -> None:
    [refusal] = refusals_of(stack_docs(f"    - {component}\n"))
    assert refusal.path == path
    assert expected in refusal.message


def test_a_host_longer_than_a_dns_label_is_refused() -> None:
    docs = stack_docs("    - {name: api, image: x/y:1, ports: [{name: http}], exposure: public}\n")
    domain = ".".join(["d" * 60] * 4)  # 243 characters: valid alone, too long with more
    [refusal] = refusals_of(docs, Cluster(domain=domain))
    assert refusal.path == "spec.components[0].exposure"
    assert "not a valid DNS name" in refusal.message


def test_a_cronjob_name_over_52_characters_is_refused_at_the_schedule() -> None:
    name = "a" * 53
    extra = f"""---
apiVersion: armillary.dev/v1
kind: Schedule
metadata: {{name: {name}}}
spec: {{tenant: acme-support, component: job, cron: "@daily"}}
"""
    docs = stack_docs("    - {name: job, type: job, image: x/y:1}\n", extra)
    [refusal] = refusals_of(docs)
    assert (refusal.kind, refusal.name, refusal.path) == ("Schedule", name, "metadata.name")
    assert "at most 52" in refusal.message


def test_a_schedule_named_like_one_of_the_tenants_inline_schedules_is_refused() -> None:
    inline = (
        "spec: {org: acme, stack: s, schedules: [{name: nightly, component: job, cron: '@daily'}]}"
    )
    extra = """---
apiVersion: armillary.dev/v1
kind: Schedule
metadata: {name: nightly}
spec: {tenant: acme-support, component: job, cron: "@hourly"}
"""
    text = BASE.replace("spec: {org: acme, stack: s}", inline)
    docs = [
        i.resource
        for i in loader.load_text(text + "    - {name: job, type: job, image: x/y:1}\n" + extra)
    ]
    [refusal] = refusals_of(
        docs
    )  # two CronJobs `nightly` in one namespace: one would replace the other
    assert (refusal.kind, refusal.name, refusal.path) == ("Schedule", "nightly", "metadata.name")
    assert "Tenant/acme-support spec.schedules[0].name" in refusal.message


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_DNS_LABEL.pattern}(\.{_DNS_LABEL.pattern})*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# What the API server checks of a name, per kind (the rest: a DNS-1123 subdomain of at
# most 253): a Job's name is also the `job-name` label of its pods, a CronJob's Jobs
# add 11 characters to its own.
_NAME_RULES = {
    "Namespace": (_DNS_LABEL, 63),
    "Service": (_DNS_1035, 63),
    "Job": (_SUBDOMAIN, 63),
    "CronJob": (_SUBDOMAIN, 52),
}


def _name_problems(obj: dict[str, Any]) -> list[str]:
    """Where an object breaks the API server's rules for names and label values."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    pattern, limit = _NAME_RULES.get(obj["kind"], (_SUBDOMAIN, 253))
    name = obj["metadata"]["name"]
    problems = [] if pattern.fullmatch(name) and len(name) <= limit else [f"{where}: name"]
    spec = obj.get("spec", {})
    templates = [spec.get("template"), spec.get("jobTemplate", {}).get("spec", {}).get("template")]
    for metadata in [obj["metadata"], *(t["metadata"] for t in templates if t)]:
        for key, value in metadata.get("labels", {}).items():
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                problems.append(f"{where}: label {key}={value}")
    for template in (t for t in templates if t):
        for container in template["spec"]["containers"]:
            if len(container["name"]) > 63 or not _DNS_LABEL.fullmatch(container["name"]):
                problems.append(f"{where}: container {container['name']}")
    return problems


def test_the_longest_names_armillary_accepts_make_valid_kubernetes_names() -> None:
    longest = stack.COMPONENT_NAME_MAX
    service, job, portless = "s" * longest, "j" * longest, "9" + "p" * (longest - 1)
    tenant, org, stack_name, schedule = "t" * 63, "o" * 63, "k" * 63, "n" * names.CRONJOB_NAME_MAX
    text = f"""
apiVersion: armillary.dev/v1
kind: Org
metadata: {{name: {org}}}
spec: {{}}
---
apiVersion: armillary.dev/v1
kind: Tenant
metadata: {{name: {tenant}}}
spec:
  org: {org}
  stack: {stack_name}
  schedules: [{{name: {schedule}, component: {job}, cron: "@daily"}}]
---
apiVersion: armillary.dev/v1
kind: Stack
metadata: {{name: {stack_name}}}
spec:
  components:
    - {{name: {service}, image: x/y:1, ports: [{{name: http}}], exposure: public}}
    - {{name: {job}, type: job, image: x/y:1, depends_on: [{service}]}}
    - {{name: {portless}, image: x/y:1}}
"""
    docs = [i.resource for i in loader.load_text(text, file="stack.yaml")]
    objects = rendered(docs, Cluster(domain="example.com"))
    assert {o["kind"] for o in objects} >= {"Deployment", "Job", "CronJob", "Service", "Ingress"}
    assert [p for o in objects for p in _name_problems(o)] == []


def test_an_org_quota_needs_requests_on_every_component() -> None:
    text = BASE.replace("spec: {}", "spec: {tenant_quota: {cpu: 2, memory: 1Gi}}")
    docs = [i.resource for i in loader.load_text(text + "    - {name: api, image: x/y:1}\n")]
    paths = sorted(r.path for r in refusals_of(docs))
    assert paths == ["spec.components[0].resources.cpu", "spec.components[0].resources.memory"]


def test_internal_components_are_reachable_only_from_the_namespace() -> None:
    docs = stack_docs(
        "    - {name: api, image: x/y:1, ports: [{name: http}]}\n"
        "    - {name: web, image: x/y:1, ports: [{name: http}], exposure: public}\n"
    )
    objects = rendered(docs)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    ns = naming.namespace_name("acme-support")
    assert set(policies) == {"same-namespace", "public-web"}
    assert policies["same-namespace"]["podSelector"] == {}
    assert policies["same-namespace"]["ingress"] == [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]}
    ]
    assert policies["public-web"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "web"
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    assert ingress["spec"]["rules"][0]["host"] == "web.acme-support.example.com"


def test_jobs_are_annotated_in_depends_on_order() -> None:
    docs = stack_docs(
        "    - {name: c, type: job, image: x/y:1, depends_on: [b]}\n"
        "    - {name: b, type: job, image: x/y:1, depends_on: [a]}\n"
        "    - {name: a, type: job, image: x/y:1}\n"
    )
    jobs = [o for o in rendered(docs) if o["kind"] == "Job"]
    order = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o for o in jobs}
    assert [order[n]["metadata"]["annotations"]["armillary.dev/order"] for n in "abc"] == [
        "0",
        "1",
        "2",
    ]


def yaml_load(text: str) -> list[Any]:
    return list(YAML(typ="safe", pure=True).load_all(text))


def test_a_yaml_parser_reads_back_exactly_the_rendered_objects() -> None:
    objects = rendered(documents(EVERY_FIELD), HTTPROUTE)
    assert yaml_load(manifest.to_yaml(objects)) == objects
    assert json.loads(manifest.to_json(objects))["items"] == objects


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(),
    st.sampled_from(
        ["true", "No", "null", "~", "8080", "1e3", "0x1F", "08:00", "-", "- a", "a: b"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.lists(st.dictionaries(st.text(), VALUES, min_size=1, max_size=5), min_size=1, max_size=3))
def test_yaml_round_trips_any_json_data(objects: list[dict[str, Any]]) -> None:
    assert yaml_load(manifest.to_yaml(objects)) == objects
