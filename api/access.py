"""Citizen access tokens: who holds the token for a decision may read it, nobody else.

The token is an HMAC of the decision id under the service's key, so it is never stored, a
retry returns the same one, and checking it needs no database read (a wrong token reveals
nothing about whether the decision exists).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["access_token", "token_matches"]

_DOMAIN = b"miaopi/citizen-access/v1:"


def access_token(decision_id: str, *, key: bytes) -> str:
    """The 32-character URL-safe token that opens ``decision_id``."""
    digest = hmac.new(key, _DOMAIN + decision_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:32]


def token_matches(decision_id: str, token: str, *, keys: list[bytes]) -> bool:
    """Constant-time check of a presented token against the current and previous keys.

    Compared as bytes: a token may arrive with any characters in it.
    """
    presented = token.encode("utf-8", "surrogatepass")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(access_token(decision_id, key=key).encode(), presented)
    return matched
