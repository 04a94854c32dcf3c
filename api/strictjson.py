"""A strict JSON reader for every JSON request body, and the route class that applies it.

``json.loads`` as FastAPI calls it lets the last of two equal keys win (a second ``id_number``
silently replaced the first and was decided), reads integers of thousands of digits, nests as
deep as the recursion limit, takes ``NaN`` and ``Infinity``, guesses UTF-16 and UTF-32, and keeps
a ``"\\ud800"`` escape as a lone surrogate that cannot be encoded, stored or hashed afterwards.
``loads`` here refuses all of these with ``MalformedJSON`` (400 ``MALFORMED_JSON``, the
documented error shape with a ``fields`` hint).

``StrictJSONRoute`` is the application's ``route_class`` (FastAPI's way to control how a
route reads its body): a route whose body is JSON needs ``Content-Type: application/json``
(``UnsupportedMediaType``, 415, otherwise) and reads it with ``loads``; form routes keep
reading forms. The body model stays in the route's signature, so OpenAPI still shows it.
A route answering JSON also refuses control characters in its path and query parameters
(422): no id holds one, and PostgreSQL cannot even compare a text holding NUL (it was a 500).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi import params as fastapi_params
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NUMBER_CHARS",
    "ApiError",
    "MalformedJSON",
    "StrictJSONRequest",
    "StrictJSONRoute",
    "UnsupportedMediaType",
    "loads",
]

MAX_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (a decision request nests 2 deep)."""
MAX_INT_DIGITS = 30
"""Integers longer than this are refused (amounts and counts fit in far fewer)."""
MAX_NUMBER_CHARS = 64
"""Numbers with a fraction or exponent written longer than this are refused."""

_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ApiError(HTTPException):
    """An HTTP error answered in the documented shape: a code and a Chinese and English message."""

    def __init__(
        self,
        status: int,
        code: str,
        message_zh: str,
        message_en: str,
        fields: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        self.fields = fields or []


class MalformedJSON(ApiError):
    """Raised when a request body is not strict JSON; ``kind`` says which rule it broke."""

    def __init__(self, kind: str, zh: str, en: str, *, loc: list[str | int] | None = None) -> None:
        super().__init__(
            400,
            "MALFORMED_JSON",
            f"请求体不是合法的JSON：{zh}",
            f"the request body is not valid JSON: {en}",
            [{"loc": loc or ["body"], "msg": en, "type": kind}],
        )
        self.kind = kind


class UnsupportedMediaType(ApiError):
    """Raised when a JSON route gets a body that is not declared ``application/json``."""

    def __init__(self, received: str | None) -> None:
        shown = (received or "")[:100]
        super().__init__(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"请求体须为JSON（Content-Type: application/json），收到：{shown or '无'}",
            f"the body must be JSON (Content-Type: application/json); received: {shown or 'none'}",
            [
                {
                    "loc": ["header", "content-type"],
                    "msg": "expected application/json",
                    "type": "media_type",
                }
            ],
        )


def _depth_problem(body: bytes) -> bool:
    """True when objects and arrays nest deeper than ``MAX_DEPTH`` (strings skipped)."""
    if body.count(b"{") + body.count(b"[") <= MAX_DEPTH:
        return False  # fewer openings than levels allowed: no need to walk (most bodies)
    depth = 0
    for match in _STRUCTURE.finditer(body):
        token = match.group()[0]
        if token in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in b"]}":
            depth -= 1
    return False


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = json.dumps(key[:64])
                raise MalformedJSON(
                    "json_duplicate_key",
                    f"键 {shown} 出现了两次",
                    f"the key {shown} appears twice in one object",
                )
            seen.add(key)
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise MalformedJSON(
            "json_number_too_large",
            f"整数超过 {MAX_INT_DIGITS} 位",
            f"an integer has more than {MAX_INT_DIGITS} digits",
        )
    return int(text)


def _float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise MalformedJSON(
            "json_number_too_large",
            "数字超出范围",
            f"a number is out of range (at most {MAX_NUMBER_CHARS} characters, finite)",
        )
    return value


def _constant(text: str) -> Any:
    raise MalformedJSON("json_not_a_number", f"不接受 {text}", f"{text} is not a JSON number")


def _lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return False


def loads(body: bytes) -> Any:
    """The JSON value of ``body``, read strictly; ``MalformedJSON`` saying why it is not one.

    UTF-8 only (a leading byte-order mark is ignored), no duplicate keys, at most
    ``MAX_DEPTH`` levels, integers of at most ``MAX_INT_DIGITS`` digits, finite numbers, no
    ``NaN``/``Infinity``, no control characters inside strings, no lone surrogates.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJSON(
            "json_not_utf8",
            f"第 {exc.start + 1} 个字节起不是UTF-8编码",
            f"not UTF-8 from byte {exc.start + 1}",
        ) from None
    text = text.removeprefix("\ufeff")
    if _depth_problem(body):
        raise MalformedJSON(
            "json_too_deep",
            f"嵌套超过 {MAX_DEPTH} 层",
            f"objects and arrays nest deeper than {MAX_DEPTH} levels",
        )
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedJSON(
            "json_invalid",
            f"第 {exc.lineno} 行第 {exc.colno} 列：{exc.msg}",
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:  # not reached after the depth check; kept as a guard
        raise MalformedJSON(
            "json_too_deep", f"嵌套超过 {MAX_DEPTH} 层", f"nests deeper than {MAX_DEPTH} levels"
        ) from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise MalformedJSON(
            "json_lone_surrogate",
            "字符串中含有不成对的代理码位（如 \\ud800）",
            "a string holds a lone surrogate escape (such as \\ud800)",
        )
    return value


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<x>+json``, in UTF-8 when a charset is named."""
    if not content_type:
        return False
    media, _, parameters = content_type.partition(";")
    kind, _, subtype = media.strip().lower().partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


class StrictJSONRequest(Request):
    """A request whose ``json()`` is ``loads``: what FastAPI calls to read a JSON body."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


def _control_in_parameters(request: Request, query_names: frozenset[str]) -> None:
    """``ApiError`` 422 when a path or a declared query parameter holds a control character."""
    found = [("path", k) for k, v in request.path_params.items() if _CONTROL.search(str(v))]
    found += [
        ("query", k)
        for k, v in request.query_params.multi_items()
        if k in query_names and _CONTROL.search(v)
    ]
    if found:
        raise ApiError(
            422,
            "INVALID_REQUEST",
            "请求参数中含有控制字符",
            "a path or query parameter holds a control character",
            [
                {"loc": [where, name], "msg": "control character", "type": "control_character"}
                for where, name in found
            ],
        )


class StrictJSONRoute(APIRoute):
    """A route that reads a JSON body strictly, and only when it is declared JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        checked = self._parameters_checked(handler)
        field = self.body_field
        if field is None or isinstance(field.field_info, fastapi_params.Form):
            return checked

        async def strict(request: Request) -> Response:
            strict_request = StrictJSONRequest(request.scope, request.receive)
            content_type = request.headers.get("content-type")
            if not is_json_media_type(content_type):
                if content_type or await strict_request.body():
                    raise UnsupportedMediaType(content_type)
            return await checked(strict_request)

        return strict

    def _parameters_checked(
        self, handler: Callable[[Request], Coroutine[Any, Any, Response]]
    ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """``handler``, refusing control characters in parameters first (JSON routes only: the
        citizen's page and its form answer any wrong address with the same HTML 404, before
        any lookup)."""
        response_class = getattr(self.response_class, "value", self.response_class)
        if isinstance(response_class, type) and issubclass(
            response_class, HTMLResponse | RedirectResponse
        ):
            return handler
        has_path = False
        query_names: set[str] = set()
        pending = [self.dependant]
        while pending:  # the route's parameters and those of its dependencies
            dependant = pending.pop()
            has_path = has_path or bool(dependant.path_params)
            query_names.update(f.alias for f in dependant.query_params)
            pending += dependant.dependencies
        if not has_path and not query_names:
            return handler
        names = frozenset(query_names)

        async def checked(request: Request) -> Response:
            _control_in_parameters(request, names)
            return await handler(request)

        return checked
