"""Contract test: /openapi.json against the running server.

Every documented (path, method, status) is exercised by at least one request below; every
response's JSON matches its documented schema; every route the server has is documented.
"""

from __future__ import annotations

import re
from typing import Any

from rtc_annotator.api.app import ROUTES
from tests.api.conftest import Api, seed_video


def check(schema: dict[str, Any], value: Any, doc: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema checker (the keywords the document uses)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        defs = doc["components"]["schemas"]
        target = defs.get(name)
        if target is None:  # pydantic-local $defs
            for s in defs.values():
                target = s.get("$defs", {}).get(name) or target
        assert target is not None, f"{where}: unresolved {schema['$ref']}"
        check(target, value, doc, where)
        return
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(option, value, doc, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: no anyOf option matched: {errors}")
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        py = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
              "object": dict, "array": list, "null": type(None)}
        ok = any(isinstance(value, py[n]) and not (n in ("integer", "number")
                                                   and isinstance(value, bool)) for n in names)
        assert ok, f"{where}: {value!r} is not {names}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, str) and "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            assert value >= schema["minimum"], where
        if "maximum" in schema:
            assert value <= schema["maximum"], where
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                check(props[key], sub, doc, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                check(schema["additionalProperties"], sub, doc, f"{where}.{key}")
            else:
                assert schema.get("additionalProperties", True) is not False, \
                    f"{where}: unexpected {key}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, doc, f"{where}[{i}]")


def _template(path: str, asset: str) -> str:
    return path.replace("{asset_id}", asset)


async def test_openapi_matches_server(api: Api) -> None:
    asset = await seed_video(api.store)
    missing = "0" * 64
    status, doc, _, _ = await api.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m, p) for m, p, _ in ROUTES}

    v = "/v1/videos/{asset_id}"
    cases: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
        ("GET", "/health", {}, "200", {}),
        ("GET", "/openapi.json", {}, "200", {}),
        ("GET", "/v1/videos", {}, "200", {}),
        ("GET", v, {}, "200", {}),
        ("GET", v, {}, "404", {"asset": missing}),
        ("GET", v + "/artifacts", {"type": "scene", "all_runs": "true"}, "200", {}),
        ("GET", v + "/artifacts", {"limit": "0"}, "400", {}),
        ("GET", v + "/artifacts", {}, "404", {"asset": missing}),
        ("GET", v + "/jump", {"kind": "object"}, "200", {}),
        ("GET", v + "/jump", {"kind": "object", "from_ms": "99999"}, "404", {}),
        ("GET", v + "/jump", {"kind": "nope"}, "400", {}),
        ("GET", v + "/find", {"q": "gradient"}, "200", {}),
        ("GET", v + "/find", {"q": "zebra"}, "404", {}),
        ("GET", v + "/find", {"q": ""}, "400", {}),
        ("GET", v + "/profiles", {}, "200", {}),
        ("GET", v + "/profiles", {"type": "bad"}, "400", {}),
        ("GET", v + "/profiles", {}, "404", {"asset": missing}),
        ("GET", v + "/metadata", {}, "200", {}),
        ("GET", v + "/metadata", {}, "404", {"asset": missing}),
        ("GET", v + "/selections/{artifact_type}", {}, "200", {"type": "scene"}),
        ("GET", v + "/selections/{artifact_type}", {}, "400", {"type": "bad"}),
        ("GET", v + "/selections/{artifact_type}", {}, "404",
         {"type": "scene", "asset": missing}),
        ("PUT", v + "/selections/{artifact_type}", {}, "200",
         {"type": "scene", "json": {"mode": "latest"}}),
        ("PUT", v + "/selections/{artifact_type}", {}, "400",
         {"type": "scene", "json": {"mode": "nope"}}),
        ("PUT", v + "/selections/{artifact_type}", {}, "404",
         {"type": "scene", "asset": missing, "json": {"mode": "latest"}}),
        ("GET", v + "/export/{format}", {}, "200", {"format": "jsonl"}),
        ("GET", v + "/export/{format}", {}, "400", {"format": "pdf"}),
        ("GET", v + "/export/{format}", {}, "404", {"format": "vtt", "asset": missing}),
    ]
    covered = set()
    for method, path, params, want, extra in cases:
        url = _template(path, extra.get("asset", asset))
        url = url.replace("{artifact_type}", extra.get("type", "")).replace(
            "{format}", extra.get("format", ""))
        status, data, _, ctype = await api.call(method, url, params=params,
                                                json=extra.get("json"))
        assert str(status) == want, (method, url, params, status, data)
        spec = doc["paths"][path][method.lower()]["responses"][want]
        content = spec.get("content", {})
        media = ctype.split(";")[0]
        assert media in content, (path, want, ctype)
        schema = content[media].get("schema")
        if schema is not None and data is not None:
            check(schema, data, doc)
        covered.add((method, path, want))
    documented_statuses = {(m.upper(), p, s) for p, ops in doc["paths"].items()
                           for m, op in ops.items() for s in op["responses"]}
    assert documented_statuses == covered
