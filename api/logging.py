"""structlog JSON logs with request and decision ids; personal data is masked before output.

Masking works on free text wherever a number stands, not on word boundaries: an ID number
right after a letter or an underscore (``A440…``, ``id_440…``), inside a path, a query string
or an exception message is masked as well as a lone one. What is masked:

* any run of 15 or more ASCII digits (with a trailing ``X``): 18-digit resident ID numbers,
  15-digit ones of the first generation, and longer runs that may hide one (bank card numbers
  too) keep their first 3 and last 4 characters (``440***********123X``);
* a mobile number (``1[3-9]`` and 9 digits) anywhere in a shorter run: ``138****1234``;
* every value under a name key (``name``, ``applicant_name``, ``holder_name``).

Ordinary numbers are left alone: amounts, dates, times, counts and 12-digit certificate
numbers (unless a mobile number's 11 digits sit inside one). Values the service makes itself
(decision ids, hashes, the request id it generates) are left alone too: they are not personal
and a hex digest often holds long digit runs. Records of the standard library's ``logging``
(uvicorn's) pass through the same masking (``PersonalDataFilter``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from engine.privacy import mask_id_number, mask_name

__all__ = ["PersonalDataFilter", "configure_logging", "mask_personal_data", "mask_text"]

_DIGITS = re.compile(r"[0-9]+[Xx]?")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_ELEVEN = re.compile(r"[0-9]{11}")
"""The shortest run ``_mask_run`` changes: text without one is returned as it is (a search in
C, ~10× cheaper than calling back for every number of a log line: ids, dates, counts)."""
_NAME_KEYS = {"name", "applicant_name", "holder_name"}
_SERVICE_MADE = {
    "decision_id",
    "record_hash",
    "prev_hash",
    "request_sha256",
    "raw_sha256",
    "key_id",
}
"""Keys whose values the service makes (uuids, digests): never personal, often digit runs."""
_GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
"""The request id the service makes when the client sends none (``uuid4().hex``)."""


def _mask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    if len(run) >= 15:
        return mask_id_number(run)
    if len(run) >= 11:
        return _MOBILE.sub(lambda p: p.group(0)[:3] + "****" + p.group(0)[7:], run)
    return run


def mask_text(text: str) -> str:
    """``text`` with every ID number and mobile number in it masked (see the module doc)."""
    if _ELEVEN.search(text) is None:
        return text
    return _DIGITS.sub(_mask_run, text)


def _mask(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str):
        if key is not None and key in _NAME_KEYS:
            return mask_name(value)
        if key in _SERVICE_MADE or (key == "request_id" and _GENERATED_REQUEST_ID.fullmatch(value)):
            return value
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(v, key) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = mask_text(text)
        return value if masked == text else masked
    return _mask(str(value), key)  # anything else is written as its text: mask that


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask ID numbers, mobile numbers and name fields (module doc)."""
    changed: dict[str, Any] = {}
    for k, v in event_dict.items():
        # Most values of most lines: text without an 11-digit run, under no name key, which
        # ``_mask`` would give back as it is (one search in C, no call).
        if type(v) is str and k not in _NAME_KEYS and _ELEVEN.search(v) is None:
            continue
        masked = _mask(v, k)
        if masked is not v:
            changed[k] = masked
    event_dict.update(changed)
    return event_dict


class PersonalDataFilter(logging.Filter):
    """Masks a standard-library log record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it when it formats the record
            return True
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def _filter_handlers() -> None:
    """Put ``PersonalDataFilter`` on the handlers of the root and uvicorn's loggers."""
    for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
                handler.addFilter(PersonalDataFilter())


class _Stderr:
    """structlog's output: one line to whatever ``sys.stderr`` is at the moment of writing.

    structlog's ``PrintLogger`` keeps the stream it was given when logging was configured; a
    command run in-process (a test's CLI runner, an embedding application) may swap stderr
    for a buffer and close it, after which every later log line raised ``ValueError`` in the
    code that logged.
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        if stream is None or stream.closed:
            return
        stream.write(message + "\n")  # one write: lines of two threads never interleave
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


_STDERR = _Stderr()


def _json_line(event: dict[str, Any], **kw: Any) -> str:
    """A log line's JSON: orjson (UTF-8 as is, ~5× json's speed; a line per decision), or
    json for what orjson does not write (ints beyond 64 bits)."""
    try:
        return orjson.dumps(event, default=kw.get("default")).decode("utf-8")
    except TypeError:
        return json.dumps(event, ensure_ascii=False, default=kw.get("default"))


def _stderr_logger(*_args: Any) -> _Stderr:
    return _STDERR


def _fallback(obj: Any) -> Any:
    """What ``JSONRenderer`` writes for a value JSON has no type for (masking already wrote
    most as text): its ``__structlog__()``, else its ``repr``."""
    structlog_form = getattr(obj, "__structlog__", None)
    return structlog_form() if callable(structlog_form) else repr(obj)


_LEVEL_OF = {"warn": "warning", "exception": "error"}
"""structlog's ``add_log_level``: the method's name but for these two."""


def _line(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    """The whole line, in one processor: the context (``merge_contextvars``), ``level``,
    ``timestamp`` (ISO, UTC, ``Z``), an exception's text (``format_exc_info``), masking
    (``mask_personal_data``) and the JSON. Each step is the one structlog's processor of that
    name does, in that order, so lines are as they were; one call instead of six, on two
    lines a decision."""
    structlog.contextvars.merge_contextvars(logger, method, event_dict)
    event_dict["level"] = _LEVEL_OF.get(method, method)
    event_dict["timestamp"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
    mask_personal_data(logger, method, event_dict)
    return _json_line(dict(event_dict), default=_fallback)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    logging.getLogger().setLevel(level.upper())  # basicConfig only sets it the first time
    # Alembic's INFO lines ("setup plugin …", each step) are plain text among the JSON lines;
    # what an upgrade did is logged once, as the schema_upgraded event.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    _filter_handlers()
    structlog.configure(
        processors=[_line],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
