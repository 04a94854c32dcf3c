"""structlog JSON logs with request and decision ids; personal data is masked before output."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from engine.privacy import mask_id_number, mask_name

__all__ = ["configure_logging", "mask_personal_data"]

_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")
_NAME_KEYS = {"name", "applicant_name", "holder_name"}


def _mask_text(text: str) -> str:
    return _ID_RE.sub(lambda m: mask_id_number(m.group(0)), text)


def _mask(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str):
        if key is not None and key in _NAME_KEYS:
            return mask_name(value)
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, key) for v in value]
    return value


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every 18-digit resident ID number and every name field."""
    for k in list(event_dict):
        event_dict[k] = _mask(event_dict[k], k)
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
