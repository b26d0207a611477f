"""Keeps subject identifiers out of every log line, access logs included.

Identifiers appear in API paths (`/api/v1/subjects/<id>/consents`); the filter rewrites the
formatted message before any handler writes it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

_SUBJECT_PATH = re.compile(
    r"(/subjects/)(?:[^\s\"'?#]+?)"
    r"(?=/(?:consents|history|withdrawals|checks|decisions)\b|[\s\"'?#]|$)"
)
# Staff look subjects up in the admin by typing the identifier: its search term is one too.
_ADMIN_SUBJECT_SEARCH = re.compile(
    r"(/admin/consent/subject/[^\s\"'#?]*\?(?:[^\s\"'#]*&)?(?:q|_changelist_filters)=)"
    r"[^&\s\"'#]*"
)
REDACTED = "<redacted>"


def redact(text: str) -> str:
    text = _SUBJECT_PATH.sub(r"\1" + REDACTED, text)
    return _ADMIN_SUBJECT_SEARCH.sub(r"\1" + REDACTED, text)


class RedactSubjectIdentifiers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = ()
        return True


class RedactingGunicornLogger(GunicornLogger):
    """Gunicorn logger whose access and error logs pass through the same redaction."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            log.addFilter(RedactSubjectIdentifiers())
