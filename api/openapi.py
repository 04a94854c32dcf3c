"""The OpenAPI document says every status a route answers, each error in the documented shape.

FastAPI documents a 422 as its own ``HTTPValidationError`` (``{"detail": [...]}``), which this
service never sends, and knows nothing of what the strict body reader and the body limit
answer. ``document_errors`` fixes the generated document once, for every route alike:
422 is ``ErrorBody``; a route with a JSON body also answers 400 (malformed JSON), 413 (too
large) and 415 (not JSON); a route with a form body answers 413.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.common import ErrorBody

__all__ = ["document_errors"]

_REF = "#/components/schemas/ErrorBody"
_JSON_BODY = {
    "400": "请求体不是合法的JSON（重复的键、嵌套过深、数字过大、非UTF-8、不成对的代理码位） / "
    "malformed JSON: not UTF-8, a duplicate key, nested too deep, a number too large, a lone "
    "surrogate, NaN",
    "413": "请求体过大 / the body is larger than the service accepts",
    "415": "请求体不是JSON / the body is not declared Content-Type: application/json",
}
_ANY_BODY = {"413": _JSON_BODY["413"]}
_INVALID = "请求字段有误 / some fields are invalid (each named in error.fields)"


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF}}}}


def _patch(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in components:
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components["ErrorBody"] = body
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            responses = operation.setdefault("responses", {})
            invalid = responses.get("422")
            if invalid is not None and "HTTPValidationError" in str(invalid):
                responses["422"] = _error_response(_INVALID)
            for response in responses.values():
                # A text route (response_class) puts its error models under text/plain too;
                # errors are always JSON.
                content = response.get("content", {})
                if _REF in str(content) and set(content) != {"application/json"}:
                    response["content"] = {"application/json": {"schema": {"$ref": _REF}}}
            content = operation.get("requestBody", {}).get("content", {})
            extra = _JSON_BODY if "application/json" in content else _ANY_BODY if content else {}
            for status, description in extra.items():
                responses.setdefault(status, _error_response(description))
    text = str(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"/{unused}'" not in text:
            components.pop(unused, None)


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` document the error answers of every route (see module doc)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _patch(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
