"""Logs for people (`text`, the default) or for a log pipeline (`ADAPTERS_LOG_FORMAT=json`).

In `json` every record is one JSON object on one line: `ts`, `level`, `logger`, `message`, and the
fields a record carries (`registry.api.observe` gives each answered request `request_id`, `user`,
`method`, `route`, `status`, `duration_s`, `bytes_in`, `bytes_out`). uvicorn's own access line is
off then: the request record replaces it, with the route template instead of the path.

Secrets never reach a line, in either format: query strings are cut from anything that looks like
a URL or a request target (signed upload URLs carry their capability there), and API tokens,
bearer credentials, passwords in URLs and `password=`/`token=`/`secret=` pairs are masked.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from registry.access.tokens import PREFIX as TOKEN_PREFIX

LogFormat = Literal["text", "json"]
REDACTED = "[redacted]"
REQUEST_FIELDS = (
    "request_id",
    "user",
    "method",
    "route",
    "status",
    "duration_s",
    "bytes_in",
    "bytes_out",
    "client",
)
"""The fields a request's record carries (`extra=` of the access logger)."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(re.escape(TOKEN_PREFIX) + r"[0-9A-Za-z]+"), TOKEN_PREFIX + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"']+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)(://[^/\s:@]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    (
        re.compile(
            r"(?i)\b(password|passwd|token|secret|secret_key|signature|sig|x-amz-signature)=[^\s&\"']+"
        ),
        r"\1=" + REDACTED,
    ),
    (re.compile(r"((?:https?://[^\s/?#\"']+)?/[^\s?#\"']*)\?[^\s\"']*"), r"\1"),
)


def redact(text: str) -> str:
    """`text` with secrets masked and query strings cut (see the module's docstring)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message as it is formatted (text format's handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def logging_config(fmt: LogFormat, level: str = "INFO", *, uvicorn: bool = False) -> dict[str, Any]:
    """A `logging.config.dictConfig` for a server (`uvicorn`: its loggers too) or a worker."""
    text = "%(asctime)s %(levelname)s %(name)s %(message)s"
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": text}
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {},
    }
    if uvicorn:
        config["loggers"] = {
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper()},
            # text: uvicorn's access line (its query strings cut, cli/server.py StripQuery);
            # json: registry.api.observe's request record instead.
            "uvicorn.access": {"level": "WARNING" if fmt == "json" else level.upper()},
        }
    return config
