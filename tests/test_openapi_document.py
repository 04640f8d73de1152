"""docs/openapi.yaml as a document, no server needed: valid OpenAPI 3.0, every reference
resolves, and it covers every route with the methods its handler implements, no more.
(Requests against the real server: tests/test_openapi.py.)"""

from __future__ import annotations

import re

import schemathesis
import tornado.web
import yaml

from handlers import routes
from services.config import FamiliesConfig
from tests.conftest import ROOT

SPEC_PATH = ROOT / "docs" / "openapi.yaml"


def load_spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def local_refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in local_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in local_refs(value)]
    return []


def test_document_is_valid_openapi():
    schema = schemathesis.openapi.from_path(SPEC_PATH)
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    assert all(result.ok() for result in schema.get_all_operations())
    spec = load_spec()
    for ref in local_refs(spec):  # the meta-schema does not check that references resolve
        node = spec
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


def implemented_methods(handler: type) -> set[str]:
    base = tornado.web.RequestHandler
    return {
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if getattr(handler, method.lower()) is not getattr(base, method.lower())
    }


def test_document_covers_every_route_and_method():
    """Each route of every API family, with the methods it implements, is documented; no more."""
    paths = load_spec()["paths"]
    table = routes.all_routes(FamiliesConfig(ihome=True, meiduo=True, news=True))
    documented, implemented = set(), set()
    for path, item in paths.items():
        documented |= {(path, method.upper()) for method in item}
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        matching = [handler for pattern, handler in table if re.fullmatch(pattern, concrete)]
        assert len(matching) == 1, f"{path} is served by {matching}"
        implemented |= {(path, method) for method in implemented_methods(matching[0])}
    assert documented == implemented
    assert len(paths) == len(table), "a route is missing from docs/openapi.yaml"
