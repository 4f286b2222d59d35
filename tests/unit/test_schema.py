"""The JSON Schema editors validate stack files with: well-formed, and in agreement with
the loader on documents it accepts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from armillary.resources import kinds, loader, schema

STACK: dict[str, Any] = {
    "apiVersion": "armillary.dev/v1",
    "kind": "Stack",
    "metadata": {"name": "support", "labels": {"example.com/team": "support"}},
    "spec": {
        "description": "Support agents",
        "components": [
            {
                "name": "db",
                "image": "postgres:16",
                "ports": [{"name": "pg", "port": 5432, "protocol": "tcp"}],
                "health_check": {"tcp": {"port": "pg"}},
                "resources": {"cpu": 0.5, "memory": "512Mi"},
            },
            {
                "name": "agent",
                "release": "agent@1.4.0",
                "replicas": 3,
                "env": {"LOG_LEVEL": "debug"},
                "ports": [{"name": "http"}],
                "health_check": {"http": {"path": "/ready", "port": "http"}, "interval_s": 2.5},
                "restart": {"policy": "on-failure"},
                "resources": {"cpu": "250m", "memory": 256},
                "exposure": "public",
                "depends_on": ["db"],
            },
            {"name": "seed", "type": "job", "command": ["python", "-m", "seed"]},
        ],
    },
}

DOCUMENTS: dict[str, dict[str, Any]] = {
    "Org": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Org",
        "metadata": {"name": "acme", "resourceVersion": "3"},
        "spec": {"display_name": "ACME"},
    },
    "Stack": STACK,
    "Release": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Release",
        "metadata": {"name": "agent-1.4.0"},
        "spec": {
            "component": "agent",
            "version": "1.4.0",
            "git": {"tag": "agent/v1.4.0", "commit": "0a1b2c3d"},
            "artifact": {"process": {"command": ["python", "-m", "agent"]}},
        },
    },
    "Tenant": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": "acme-support"},
        "spec": {
            "org": "acme",
            "stack": "support",
            "overrides": {"agent": {"replicas": 2}},
            "routing": {"slack": ["T01ABC"]},
            "schedules": [{"name": "nightly", "component": "seed", "cron": "0 3 * * *"}],
            "runtime": {"kubernetes": {"cluster": "prod-eu"}},
        },
    },
    "Schedule": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Schedule",
        "metadata": {"name": "weekly"},
        "spec": {"tenant": "acme-support", "component": "seed", "cron": "@weekly"},
    },
    "WebhookSource": {
        "apiVersion": "armillary.dev/v1",
        "kind": "WebhookSource",
        "metadata": {"name": "slack"},
        "spec": {
            "type": "slack",
            "secrets": [{"name": "slack-signing"}],
            "routing": {"key_space": "slack", "pointer": "/team_id"},
        },
    },
    "Cluster": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Cluster",
        "metadata": {"name": "prod-eu"},
        "spec": {
            "kubeconfig": {"secret": "prod-eu-kubeconfig", "key": "KUBECONFIG"},
            "ingress": "httproute",
            "domain": "apps.example.com",
            "storage_class": "fast",
            "access_mode": "ReadWriteMany",
        },
    },
    "Secret": {
        "apiVersion": "armillary.dev/v1",
        "kind": "Secret",
        "metadata": {"name": "acme-db"},
        "spec": {"tenant": "acme-support", "data": {"DB_PASSWORD": "s3cr3t"}},
    },
}

KIND_NAMES = [k.name for k in kinds.KINDS]


def test_every_kind_has_a_document_here() -> None:
    assert sorted(DOCUMENTS) == sorted(KIND_NAMES)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_schema_of_each_kind_is_valid_json_schema(kind: str) -> None:
    document = schema.for_kind(kind)

    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_combined_schema_is_valid_json_schema() -> None:
    combined = schema.combined()

    Draft202012Validator.check_schema(combined)
    assert len(combined["oneOf"]) == len(kinds.KINDS)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_combined_schema_keeps_each_kinds_definitions_intact(kind: str) -> None:
    # combined() merges every kind's $defs into one table: a name used by two kinds
    # for different models would silently lose one of them.
    combined = schema.combined()["$defs"]

    for name, definition in schema.for_kind(kind).get("$defs", {}).items():
        assert combined[name] == definition, name


@pytest.mark.parametrize("word", ["stack", "Stacks", "stacks"])
def test_for_kind_accepts_plural_and_any_case(word: str) -> None:
    assert schema.for_kind(word) == schema.for_kind("Stack")


def test_for_kind_refuses_an_unknown_kind() -> None:
    with pytest.raises(KeyError, match="unknown kind 'Pod'; expected one of Org, Stack"):
        schema.for_kind("Pod")


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_valid_documents_validate_against_their_schema_and_the_combined_one(kind: str) -> None:
    document = DOCUMENTS[kind]
    loaded = loader.load_text(json.dumps(document), file="x.json")  # the loader agrees

    assert [d.resource.kind for d in loaded] == [kind]
    assert list(Draft202012Validator(schema.for_kind(kind)).iter_errors(document)) == []
    assert list(Draft202012Validator(schema.combined()).iter_errors(document)) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.update(kind="Pod"), id="unknown-kind"),
        pytest.param(lambda d: d.update(extra=1), id="unknown-top-level-field"),
        pytest.param(lambda d: d["spec"]["components"][0].update(replicas=-1), id="negative"),
        pytest.param(lambda d: d["spec"]["components"][0].update(replicaz=2), id="typo"),
        pytest.param(lambda d: d["spec"].update(components=[]), id="no-components"),
        pytest.param(lambda d: d["metadata"].update(name="Support"), id="bad-name"),
        pytest.param(lambda d: d.pop("spec"), id="missing-spec"),
    ],
)
def test_combined_schema_refuses_what_the_loader_refuses(change: Any) -> None:
    document = copy.deepcopy(STACK)
    change(document)

    assert list(Draft202012Validator(schema.combined()).iter_errors(document)) != []


def test_combined_schema_refuses_a_wrong_api_version() -> None:
    document = copy.deepcopy(STACK)
    document["apiVersion"] = "armillary.dev/v2"

    assert list(Draft202012Validator(schema.combined()).iter_errors(document)) != []
