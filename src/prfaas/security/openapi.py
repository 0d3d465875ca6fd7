"""OpenAPI documents for the control listeners, from the msgspec Structs their routes decode
(so fuzzers such as schemathesis exercise exactly the typed bodies the routes accept)."""

from __future__ import annotations

from typing import Any

import msgspec

Route = tuple[str, str, Any]  # path, method, body type (None: no body)


def openapi(title: str, routes: list[Route]) -> dict[str, Any]:
    bodies = [body for _, _, body in routes if body is not None]
    schemas, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(bodies, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, body in routes:
        op: dict[str, Any] = {"responses": {"200": {"description": "ok"}}}
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[body]}},
            }
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",  # msgspec writes JSON Schema 2020-12
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }
