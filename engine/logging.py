"""structlog set-up: JSON lines with static dotted event names and bound context."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import structlog

# msgspec instead of json.dumps (the access log writes a line per request): what JSON cannot
# hold is logged as its repr, as structlog's default renderer does.
_encoder = msgspec.json.Encoder(enc_hook=repr)


def _dumps(event_dict: Any, **_: Any) -> str:
    return _encoder.encode(event_dict).decode()


def configure_logging(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
