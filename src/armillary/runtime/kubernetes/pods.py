"""A template → the pod spec every workload of it runs: the container (image, command,
env with Secrets, ports, probes, resources), the data volume, the grace period.

Ports: a fixed port keeps its number; a port the nodes runtime would pick at start
(`port` left out) gets 8080, 8081, ... in order, skipping fixed ones, and the process
learns it from PORT / PORT_<NAME> as on nodes. Env: the template's, then what
Armillary sets (ARMILLARY_*, PORT*, <DEP>_URL for each dependency with a port), then
the Secrets: a Secret whose keys are known becomes one `secretKeyRef` per key (listed
last, so it wins as on nodes); one whose keys are not known becomes an `envFrom`
with its prefix, where Kubernetes lets a plain env var of the same name win instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from armillary.runtime.instance import Template, url_variable
from armillary.runtime.kubernetes import tenancy
from armillary.runtime.kubernetes.model import DATA_DIR, TenantView

Obj = dict[str, Any]

FIRST_PORT = 8080


def port_numbers(template: Template) -> dict[str, int]:
    """Each port's number in the container, in the template's order."""
    fixed = {port for _, port in template.ports if port is not None}
    numbers: dict[str, int] = {}
    candidate = FIRST_PORT
    for name, port in template.ports:
        if port is None:
            while candidate in fixed:
                candidate += 1
            port = candidate
            candidate += 1
        numbers[name] = port
    return numbers


def seconds(value: float, *, minimum: int = 1) -> int:
    """Kubernetes counts whole seconds; round up so no wait gets shorter."""
    return max(minimum, math.ceil(value))


def pod_spec(view: TenantView, template: Template, urls: Mapping[str, str], *, restart: str) -> Obj:
    ports = port_numbers(template)
    container: Obj = {
        "name": template.component,
        "image": template.image,
        "env": _env(view, template, ports, urls),
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
    }
    if template.command:
        container["command"] = list(template.command)
    if template.cwd:
        container["workingDir"] = template.cwd
    env_from = _env_from(view, template)
    if env_from:
        container["envFrom"] = env_from
    if ports:
        container["ports"] = [
            {"name": name, "containerPort": number, "protocol": "TCP"}
            for name, number in ports.items()
        ]
    resources = _resources(template)
    if resources:
        container["resources"] = resources
    container.update(probes(template, ports))
    spec: Obj = {
        "containers": [container],
        "enableServiceLinks": False,  # no docker-link env vars: the env is what the stack says
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": seconds(template.stop_grace_s, minimum=0),
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": tenancy.DATA_CLAIM}}],
    }
    if template.node_labels:
        spec["nodeSelector"] = dict(template.node_labels)
    return spec


def _env(
    view: TenantView, template: Template, ports: Mapping[str, int], urls: Mapping[str, str]
) -> list[Obj]:
    env = dict(template.env)
    env.update(
        ARMILLARY_TENANT=view.tenant,
        ARMILLARY_COMPONENT=template.component,
        ARMILLARY_DATA_DIR=DATA_DIR,
    )
    for i, (name, number) in enumerate(ports.items()):
        if i == 0:
            env["PORT"] = str(number)
        env["PORT_" + name.upper().replace("-", "_")] = str(number)
    for dep in template.depends_on:
        if dep in urls:
            env[url_variable(dep)] = urls[dep]
    from_secrets: dict[str, Obj] = {}
    for use in template.secrets:
        for key in view.secret_keys.get(use.secret, ()):
            ref = {"secretKeyRef": {"name": use.secret, "key": key}}
            from_secrets[use.prefix + key] = {"name": use.prefix + key, "valueFrom": ref}
    items: list[Obj] = [
        {"name": k, "value": v} for k, v in sorted(env.items()) if k not in from_secrets
    ]
    items.append(
        {"name": "ARMILLARY_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    items.extend(from_secrets[k] for k in sorted(from_secrets))
    return items


def _env_from(view: TenantView, template: Template) -> list[Obj]:
    refs: list[Obj] = []
    for use in template.secrets:
        if use.secret in view.secret_keys:
            continue
        ref: Obj = {"secretRef": {"name": use.secret}}
        if use.prefix:
            ref["prefix"] = use.prefix
        refs.append(ref)
    return refs


def _resources(template: Template) -> Obj:
    """Requests as the stack asks; memory is also the limit (over it the pod is killed, as
    a node would); CPU has no limit, so a busy replica is not throttled below idle CPU."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if template.cpu_millicores:
        requests["cpu"] = f"{template.cpu_millicores}m"
    if template.memory_mb:
        requests["memory"] = limits["memory"] = f"{template.memory_mb}Mi"
    resources: Obj = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def probes(template: Template, ports: Mapping[str, int]) -> Obj:
    """readinessProbe (and startupProbe for a start period) from the health check."""
    check = template.health_check
    if check is None:
        return {}
    handler = _handler(check, ports)
    period_s = seconds(check.get("interval_s", 10))
    timing = {"periodSeconds": period_s, "timeoutSeconds": seconds(check.get("timeout_s", 2))}
    found: Obj = {
        "readinessProbe": {
            **handler,
            **timing,
            "successThreshold": check.get("success_threshold", 1),
            "failureThreshold": check.get("failure_threshold", 3),
        }
    }
    start_s = check.get("start_period_s", 0)
    if start_s:
        # Failures within the start period do not count: the startup probe gets that
        # long (in periods) plus the usual threshold before the pod is restarted.
        attempts = math.ceil(start_s / period_s) + check.get("failure_threshold", 3)
        found["startupProbe"] = {**handler, **timing, "failureThreshold": attempts}
    return found


def _handler(check: Mapping[str, Any], ports: Mapping[str, int]) -> Obj:
    if "exec" in check:
        return {"exec": {"command": list(check["exec"]["command"])}}
    probe = check.get("http") or check.get("tcp") or {}
    port = probe.get("port")
    if port is None:
        port = next(iter(ports.values()), FIRST_PORT)
    elif isinstance(port, str):
        port = ports[port]
    if "http" in check:
        return {"httpGet": {"path": probe.get("path", "/healthz"), "port": port}}
    return {"tcpSocket": {"port": port}}
