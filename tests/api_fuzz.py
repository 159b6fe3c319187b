"""A fuzz test of the REST API from its OpenAPI schema (hypothesis): every operation gets
generated path, query and JSON body values, schema-shaped and hostile (huge integers, NUL
bytes, lone surrogates, deep nesting, wrong types), and no answer may be a 5xx.

Used by tests/test_api_fuzz.py (embedded mode, SQLite) and its PostgreSQL twin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HOSTILE_TEXT = ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "../../etc/passwd", "%00", "é" * 300]
HOSTILE_INTS = [0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 10**23, -(10**23)]
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _text() -> st.SearchStrategy[str]:
    return st.text(max_size=40) | st.sampled_from(HOSTILE_TEXT)


def _ints() -> st.SearchStrategy[int]:
    return st.integers(-5, 50) | st.sampled_from(HOSTILE_INTS) | st.integers()


def value_for(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> st.SearchStrategy:
    """Values shaped like ``schema`` (a JSON schema of ``spec``), often hostile, sometimes of
    a wrong type altogether."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return value_for(spec["components"]["schemas"][name], spec, depth)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of([value_for(option, spec, depth) for option in options])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | _text()
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    shaped: st.SearchStrategy
    if kind == "integer":
        shaped = _ints()
    elif kind == "number":
        shaped = _ints() | st.floats(allow_nan=False)
    elif kind == "boolean":
        shaped = st.booleans()
    elif kind == "string":
        shaped = _text()
    elif kind == "null":
        shaped = st.none()
    elif kind == "array" and depth < 4:
        items = value_for(schema.get("items", {}), spec, depth + 1)
        shaped = st.lists(items, max_size=4)
    elif kind == "object" and depth < 4:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        shaped = st.fixed_dictionaries(
            {k: value_for(v, spec, depth + 1) for k, v in properties.items() if k in required},
            optional={
                k: value_for(v, spec, depth + 1) for k, v in properties.items() if k not in required
            },
        )
        if not properties:
            shaped = st.dictionaries(_text(), ANY_VALUE, max_size=4)
    else:
        shaped = ANY_VALUE
    return st.one_of(shaped, shaped, ANY_VALUE)  # mostly shaped, sometimes anything


def _rendered(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _json_bytes(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as escapes such as \\ud800, as a hostile client sends them
    return json.dumps(value).encode()


def operations(spec: dict[str, Any], skip: set[tuple[str, str]]) -> list[tuple[str, str, dict]]:
    """Every (method, path template, operation) of the schema, less ``skip``."""
    return [
        (method.upper(), path, operation)
        for path, by_method in spec["paths"].items()
        for method, operation in by_method.items()
        if (method.upper(), path) not in skip
    ]


def request_for(spec: dict[str, Any], method: str, path: str, operation: dict) -> st.SearchStrategy:
    """Generated ``(method, url, body bytes or None)`` for one operation."""
    parameters = operation.get("parameters", [])
    path_values = {
        p["name"]: value_for(p.get("schema", {}), spec) for p in parameters if p["in"] == "path"
    }
    query_values = {
        p["name"]: value_for(p.get("schema", {}), spec) for p in parameters if p["in"] == "query"
    }
    body_schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema")
    )
    body = value_for(body_schema, spec) if body_schema else st.none()

    @st.composite
    def build(draw: Callable) -> tuple[str, str, bytes | None]:
        url = path
        for name, strategy in path_values.items():
            text = _rendered(draw(strategy)) or "x"
            url = url.replace(
                "{" + name + "}", quote(text.encode("utf-8", "surrogatepass"), safe="")
            )
        chosen = draw(st.fixed_dictionaries({}, optional=query_values))
        if chosen:
            pairs = "&".join(
                f"{quote(k)}={quote(_rendered(v).encode('utf-8', 'surrogatepass'), safe='')}"
                for k, v in chosen.items()
            )
            url += "?" + pairs
        sent = draw(body)
        return method, url, _json_bytes(sent) if body_schema else None

    return build()


def fuzz(
    spec: dict[str, Any],
    call: Callable[[str, str, bytes | None], tuple[int, str]],
    examples: int,
    skip: set[tuple[str, str]] = frozenset(),
) -> int:
    """Send ``examples`` generated requests per operation through ``call`` (method, url,
    body -> status, text); fails on any 5xx. Returns how many requests were sent."""
    sent = 0
    for method, path, operation in operations(spec, set(skip)):

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(request_for(spec, method, path, operation))
        def check(request: tuple[str, str, bytes | None]) -> None:
            nonlocal sent
            status, text = call(*request)
            sent += 1
            assert status < 500, (request, status, text[:500])

        check()
    return sent


EXAMPLES = 8  # per operation: about 230 requests in all, bounded in count and time


def fuzz_studio(settings: Any, examples: int = EXAMPLES) -> int:
    """Fuzz every operation of a studio on ``settings`` (a checkpoint and a campaign open
    for votes stored first), as an admin (with a new token whenever a fuzzed DELETE
    revoked the last); returns the number of requests sent."""
    from fastapi.testclient import TestClient

    from app.core.models import Role, User
    from app.core.users import create_token
    from app.web.factory import create_app
    from tests.web_support import add_account, ready_campaign, stored_checkpoint, user_id

    app = create_app(settings)
    db = app.state.studio.db
    add_account(db, "fuzz-admin", Role.ADMIN)
    owner = user_id(db, "fuzz-admin")
    stored_checkpoint(db, settings)
    ready_campaign(db, settings, "fuzzed", pairs=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        token = [""]

        def call(method: str, url: str, body: bytes | None) -> tuple[int, str]:
            for _ in range(2):  # once more with a new token if a fuzzed DELETE revoked it
                if not token[0]:
                    token[0] = db.write(lambda s: create_token(s, s.get(User, owner), "fuzz"))
                headers = {
                    "Authorization": f"Bearer {token[0]}",
                    "Content-Type": "application/json",
                }
                answer = client.request(method, url, content=body, headers=headers)
                if answer.status_code != 401:
                    break
                token[0] = ""
            return answer.status_code, answer.text

        return fuzz(app.openapi(), call, examples)
