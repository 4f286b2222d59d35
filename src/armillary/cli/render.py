"""`armillary render -f DIR --target kubernetes`: the manifests a tenant's stack becomes
on a cluster, printed without a server, for `kubectl apply`, Argo CD or Flux.

Files are loaded and validated as `apply -f` does; every Tenant among them (or those
`--tenant` names) is expanded as the server would and rendered by
`runtime.kubernetes.render`. Output is byte-stable. What cannot become a valid
Kubernetes object is refused at its file:line and field path (exit 4); a bad flag is
a usage error (exit 2). Secrets are referenced by name; their values are never printed.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

import typer

from armillary.cli.apply import Files, Recursive, _load
from armillary.cli.console import fail, out
from armillary.errors import Invalid, Issue
from armillary.resources import loader
from armillary.runtime.kubernetes import inputs, manifest, names
from armillary.runtime.kubernetes.model import Cluster, Refusal, Unrenderable
from armillary.runtime.kubernetes.render import render as render_views

_SIZE = re.compile(r"^[1-9][0-9]*(Ki|Mi|Gi|Ti)$")
_PART = re.compile(r"[^.\[\]]+")  # spec.components[0].name -> spec, components, 0, name


class Target(StrEnum):
    kubernetes = "kubernetes"


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


class IngressKind(StrEnum):
    ingress = "ingress"
    httproute = "httproute"


class AccessMode(StrEnum):
    ReadWriteOnce = "ReadWriteOnce"
    ReadWriteMany = "ReadWriteMany"
    ReadWriteOncePod = "ReadWriteOncePod"


def render(
    filename: Files,
    target: Annotated[Target, typer.Option(help="What to render for: kubernetes.")],
    recursive: Recursive = False,
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", "-t", help="Only this tenant (repeatable); all when left out."),
    ] = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="yaml or json.")] = Format.yaml,
    ingress: Annotated[
        IngressKind, typer.Option(help="Serve public components with an Ingress or an HTTPRoute.")
    ] = IngressKind.ingress,
    domain: Annotated[
        str, typer.Option(help="Public hosts are <component>.<tenant>.<domain>.")
    ] = "example.com",
    ingress_class: Annotated[
        str | None, typer.Option(help="The Ingresses' ingressClassName (cluster default if unset).")
    ] = None,
    gateway: Annotated[
        str, typer.Option(help="The Gateway HTTPRoutes attach to, as NAMESPACE/NAME.")
    ] = "armillary-system/armillary",
    storage_class: Annotated[
        str | None, typer.Option(help="StorageClass of each tenant's data volume (default class).")
    ] = None,
    access_mode: Annotated[
        AccessMode, typer.Option(help="Access mode of each tenant's data volume.")
    ] = AccessMode.ReadWriteOnce,
    data_size: Annotated[str, typer.Option(help="Size of each tenant's data volume.")] = "1Gi",
) -> None:
    """Print the Kubernetes manifests of the tenants in the files (no server needed)."""
    cluster = _cluster(
        ingress=ingress,
        domain=domain,
        ingress_class=ingress_class,
        gateway=gateway,
        storage_class=storage_class,
        access_mode=access_mode,
        data_size=data_size,
    )
    loaded = _load(filename, recursive)
    views, refusals = inputs.views([doc.resource for doc in loaded])
    if tenant:
        known = sorted(d.resource.metadata.name for d in loaded if d.resource.kind == "Tenant")
        unknown = [t for t in tenant if t not in known]
        if unknown:
            raise typer.BadParameter(
                f"no tenant {', '.join(unknown)} in the files; expected one of {known}",
                param_hint="'--tenant'",
            )
        views = [v for v in views if v.tenant in tenant]
        # Another tenant's problems do not stop this one's manifests.
        refusals = [r for r in refusals if r.kind != "Tenant" or r.name in tenant]
    try:
        if refusals:
            raise Unrenderable(refusals)
        objects = render_views(views, cluster=cluster)
    except Unrenderable as exc:
        fail(Invalid([_issue(r, loaded) for r in exc.refusals]))
    text = manifest.to_json(objects) if output is Format.json else manifest.to_yaml(objects)
    out.file.write(text)


def _cluster(
    *,
    ingress: IngressKind,
    domain: str,
    ingress_class: str | None,
    gateway: str,
    storage_class: str | None,
    access_mode: AccessMode,
    data_size: str,
) -> Cluster:
    """The settings from the flags; a bad one is a usage error naming its flag."""
    if (problem := names.host(domain)) is not None:
        raise typer.BadParameter(problem, param_hint="'--domain'")
    gateway_namespace, sep, gateway_name = gateway.partition("/")
    if not sep or names.host(gateway_namespace) or names.host(gateway_name):
        raise typer.BadParameter(
            f"expected NAMESPACE/NAME of a Gateway, got {gateway!r}", param_hint="'--gateway'"
        )
    if not _SIZE.fullmatch(data_size):
        raise typer.BadParameter(
            f"expected a size such as 1Gi or 500Mi, got {data_size!r}", param_hint="'--data-size'"
        )
    return Cluster(
        ingress=ingress.value,
        domain=domain,
        ingress_class=ingress_class,
        gateway=gateway_name,
        gateway_namespace=gateway_namespace,
        storage_class=storage_class,
        access_mode=access_mode.value,
        data_size=data_size,
    )


def _issue(refusal: Refusal, loaded: list[loader.Loaded]) -> Issue:
    """A refusal at the file and line of the field it concerns (of its document when
    the field cannot be found, as for a document read from stdin)."""
    path = f"{refusal.kind}/{refusal.name} {refusal.path}"
    for doc in loaded:
        resource = doc.resource
        if resource.kind == refusal.kind and resource.metadata.name == refusal.name:
            loc = tuple(int(p) if p.isdigit() else p for p in _PART.findall(refusal.path))
            line = loader.line_of(doc.file, kind=refusal.kind, name=refusal.name, loc=loc)
            return Issue(path=path, message=refusal.message, file=doc.file, line=line or doc.line)
    return Issue(path=path, message=refusal.message)


def register(app: typer.Typer) -> None:
    app.command()(render)
