"""A short way through the HTTP stack for ``POST /v1/decisions`` when nothing is wrong.

Most requests a platform sends are well formed: a known platform key, a JSON body that
validates, a proper ``Idempotency-Key``. For those, FastAPI's routing, dependency solving and
request wrapping cost about as much CPU as the decision itself. This ASGI middleware takes
such a request straight to the decision; anything else (no or unknown credential, a bad
header, a body that is not strict JSON or does not validate) goes on, untouched and with its
body, to the FastAPI route, which answers it exactly as it always has. Both ways share the
decision, the refusals after validation and the answer (``decide`` in ``create_app``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from api.auth import Authenticator, AuthFailed, Role
from api.service import DecisionRequest
from api.strictjson import is_json_media_type, loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_KEY = re.compile(rb"[!-~]{1,200}")
_ROLES = (Role.PLATFORM,)


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` (already read) first, then reads on."""
    buffered = iter(messages)

    async def replay() -> Message:
        for message in buffered:
            return message
        return await receive()

    return replay


class FastDecisions:
    """Answer well-formed ``POST /v1/decisions`` requests without the framework (module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: Callable[[], Authenticator],
        endpoint: Callable[[DecisionRequest, str], Awaitable[Any]],
        route: Callable[[], Any],
    ) -> None:
        self.app = app
        self.auth = auth
        self.endpoint = endpoint
        self.route = route
        self.taken = 0
        """Requests answered here (the tests read it)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != "/v1/decisions"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of a repeated header, as Starlette reads
        authorization = headers.get(b"authorization")
        content_type = headers.get(b"content-type")
        key = headers.get(b"idempotency-key")
        who = None
        if (
            authorization is not None
            and key is not None
            and _KEY.fullmatch(key)
            and content_type is not None
            and is_json_media_type(content_type.decode("latin-1"))
        ):
            try:
                who = self.auth().require_at_once(authorization.decode("latin-1"), _ROLES)
            except AuthFailed:  # the route refuses it, in its words
                who = None
        if who is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request: DecisionRequest | None = None
        if messages[-1]["type"] == "http.request":
            try:
                request = DecisionRequest.model_validate(loads(b"".join(chunks)))
            except Exception:  # malformed or invalid: the route answers it, in its words
                request = None
        if request is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        self.taken += 1
        scope["route"] = self.route()  # what the request metrics are labelled by
        structlog.contextvars.bind_contextvars(actor=who.subject)
        response = await self.endpoint(request, key.decode("ascii"))  # type: ignore[union-attr]
        await response(scope, receive, send)
