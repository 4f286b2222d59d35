"""`/api/v1/{plural}`: list, get, apply one, delete — one set of routes per kind,
generated from the kind registry so the OpenAPI document names every kind."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request, Response

from armillary import wire
from armillary.api import audit, openapi, paging
from armillary.api.routes.secrets import Vaulted
from armillary.api.security import Db, Developer, TenantChecked, Viewer, may_write, visible
from armillary.control import apply as applying
from armillary.control import references
from armillary.errors import Conflict, Invalid, Issue, NotFound
from armillary.resources import kinds, selectors
from armillary.store import repository
from armillary.store.database import Tx

router = APIRouter(prefix="/api/v1", tags=["resources"])


Selector = Annotated[
    str | None,
    Query(
        description="Label selector, Kubernetes grammar: `k=v`, `k==v`, `k!=v`, "
        "`k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by `,` (all must hold)",
        max_length=4096,
        json_schema_extra={"pattern": selectors.PATTERN},
    ),
]
Continue = Annotated[
    str | None,
    Query(
        alias="continue",
        description="Where to go on: the `metadata.continue` of the previous page",
        max_length=paging.MAX_CURSOR,
        pattern=paging.CURSOR_PATTERN,
    ),
]
ResourceVersion = Annotated[
    str | None,
    Query(
        alias="resourceVersion",
        description="Delete only if the resource is still at this version (409 if it moved)",
        pattern=r"^[0-9]{1,18}$",
    ),
]

Cascade = Annotated[
    bool,
    Query(
        description=(
            "Deleting an Org or a Stack that tenants use: delete those tenants first, in "
            "the same transaction (without it, such a delete is refused with 409)"
        ),
    ),
]


async def _remove_users(
    conn: Tx, kind: str, name: str, *, cascade: bool
) -> list[repository.Stored]:
    """Refuse (409) to delete a resource tenants use, naming them; with `cascade`,
    delete those tenants and return them."""
    if kind not in references.USED_BY_TENANTS:
        return []
    tenants = {t.name: t for t in await repository.list_kind(conn, "Tenant")}
    used_by = references.users(kind, name, [t.canonical() for t in tenants.values()])
    if used_by and not cascade:
        raise Conflict(
            f"{kind.lower()}/{name} is {references.in_use(used_by)}; delete or move them first, or "
            "delete with cascade (`--cascade`, `?cascade=true`) to delete them too"
        )
    return [await repository.remove(conn, "Tenant", t) for t in used_by]


def _register(kind: kinds.Kind) -> None:
    base = f"/{kind.plural}"

    async def list_resources(
        db: Db,
        _who: Viewer,
        selector: Selector = None,
        limit: paging.Limit = None,
        token: Continue = None,
    ) -> Response:
        chosen = selectors.parse(selector)
        page: list[repository.Stored] = []
        cursor, more = token, False
        async with db.read() as conn:
            while not more:
                batch = await repository.list_kind(
                    conn, kind.name, after=cursor, limit=None if limit is None else limit + 1
                )
                for stored in batch:
                    if limit is not None and len(page) == limit:
                        more = True  # a row is left: the next page starts after the cursor
                        break
                    cursor = stored.name
                    if selectors.matches(chosen, stored.labels):
                        page.append(stored)
                if limit is None or len(batch) <= limit:
                    break  # every row after the cursor was read
        listed: dict[str, Any] = {"apiVersion": "armillary.dev/v1", "kind": "List"}
        if more and cursor is not None:
            listed["metadata"] = {"continue": cursor}
        listed["items"] = [s.document() for s in page]
        # Encoded here, not through the response model: the documents already have the
        # model's shape, and validating a thousand of them again costs more than the
        # read (the dashboard lists every tenant; docs/performance.md).
        return Response(orjson.dumps(listed), media_type="application/json")

    async def get_resource(name: str, db: Db, who: TenantChecked) -> dict[str, Any]:
        async with db.read() as conn:
            found = await repository.get(conn, kind.name, name)
        if found is None:
            raise NotFound(f"{kind.name.lower()}/{name} not found")
        visible(who, found.owner())
        return found.document()

    async def apply_resource(
        name: str,
        request: Request,
        response: Response,
        db: Db,
        keys: Vaulted,
        who: Developer,
        document: Annotated[Any, Body()],
    ) -> dict[str, Any]:
        audit.note(request, kind=kind.name, name=name)
        may_write(who, [kind.name])
        parsed = applying.parse_documents([document], vault=keys)
        desired = parsed[0].desired
        problems = []
        if desired.kind != kind.name:
            problems.append(Issue(path="kind", message=f"expected {kind.name!r} at {base}"))
        if desired.name != name:
            problems.append(
                Issue(path="metadata.name", message=f"expected {name!r}, the name in the URL")
            )
        if problems:
            raise Invalid(problems)
        now = dt.datetime.now(dt.UTC)
        [applied] = await applying.apply(db, parsed, prune=False, now=now, vault=keys)
        audit.note_applied(request, [applied])
        if applied.result == "created":
            response.status_code = 201
        return {"result": applied.result, "resource": applied.stored.document()}

    async def delete_resource(
        name: str,
        request: Request,
        db: Db,
        who: Developer,
        resource_version: ResourceVersion = None,
        cascade: Cascade = False,
    ) -> dict[str, Any]:
        audit.note(request, kind=kind.name, name=name)
        may_write(who, [kind.name])
        async with db.write() as conn:
            if await repository.get(conn, kind.name, name) is None:
                raise NotFound(f"{kind.name.lower()}/{name} not found")
            if kind.name in references.USED_BY_TENANTS and cascade:
                may_write(who, ["Tenant"])
            dependents = await _remove_users(conn, kind.name, name, cascade=cascade)
            gone = await repository.remove(
                conn,
                kind.name,
                name,
                expected_version=None if resource_version is None else int(resource_version),
            )
        audit.note(
            request,
            kind=kind.name,
            name=name,
            generation_before=gone.generation,
            result="deleted",
            replace=True,
        )
        for tenant in dependents:
            audit.note(
                request,
                kind="Tenant",
                name=tenant.name,
                generation_before=tenant.generation,
                result="deleted",
                extra={"cascade": f"{kind.name.lower()}/{name}"},
            )
        return {"result": "deleted", "resource": gone.document()}

    summary = kind.name
    router.add_api_route(
        base,
        list_resources,
        methods=["GET"],
        summary=f"List {summary}s",
        **openapi.answer(wire.ResourceList),
        operation_id=f"list_{kind.plural}",
    )
    router.add_api_route(
        f"{base}/{{name}}",
        get_resource,
        methods=["GET"],
        summary=f"Get a {summary}",
        **openapi.answer(wire.Resource, 404),
        operation_id=f"get_{kind.plural}",
    )
    router.add_api_route(
        f"{base}/{{name}}",
        apply_resource,
        methods=["PUT"],
        summary=f"Apply a {summary} (create, update or leave unchanged)",
        **openapi.answer(wire.ResourceWritten, 409, also={201: "Created"}),
        openapi_extra=openapi.body_of_kind(kind.name),
        operation_id=f"apply_{kind.plural}",
    )
    router.add_api_route(
        f"{base}/{{name}}",
        delete_resource,
        methods=["DELETE"],
        summary=f"Delete a {summary}",
        **openapi.answer(wire.ResourceWritten, 404, 409),
        operation_id=f"delete_{kind.plural}",
    )


for _kind in kinds.KINDS:
    _register(_kind)
