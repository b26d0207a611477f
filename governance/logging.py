"""Keeps subject identifiers out of every log line, access logs included.

Identifiers appear in API paths (`/api/v1/subjects/<id>/consents`), decoded or raw, and so
may hold any character: quotes, spaces, `?`, raw slashes, even a route's own suffix. So a
path is redacted from `/subjects/` up to the suffix of a subject route that ends the path
(the suffixes are read from the URL conf, so a new route is covered without anyone
remembering to), or to its end when no suffix ends it. Query parameters that carry
identifiers (the admin's searches of every model, `subject_id=`, ...) are redacted too,
also when nested in another parameter (`next=`, `_changelist_filters=`).

Gunicorn's access log is redacted field by field (RedactingGunicornLogger.atoms), where it
is known where a path ends; free text (Django's request log, error logs) by `redact`.

Every line carries the id of the request that caused it (`request_id_*`: the web's
middleware sets it, Celery's task headers carry it into the tasks a request queues), and
with LOG_FORMAT=json each line is one JSON object (JsonFormatter, and gunicorn's access
log as JSON too).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

from gunicorn.glogging import Logger as GunicornLogger

REDACTED = "<redacted>"
SUBJECTS = "/subjects/"
# Query parameters whose value is, or may be, a subject identifier. `q` and `term` are the
# admin's changelist search and autocomplete, on every model: staff type identifiers there.
IDENTIFYING_PARAMS = frozenset(
    {
        "q",
        "term",
        "subject",
        "subject_id",
        "subject_ids",
        "identifier",
        "device_id",
        "_changelist_filters",
    }
)
# How deep an encoded parameter is decoded to look for identifiers inside (`next=` holding
# `_changelist_filters=` holding `q=`); deeper nesting is redacted whole.
_NESTING = 3
# Where a path ends in free text: whitespace, quotes, a query or fragment, or the end.
_PATH_END = r"(?=[\s\"'?#]|\Z)"

_suffixes: dict[str, tuple[re.Pattern[str], re.Pattern[str]] | None] = {}
_computing = threading.local()


def _group_end(regex: str, start: int) -> int:
    """The index just past the group opened at `start` (escapes and classes skipped)."""
    depth, i, in_class = 0, start, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(regex)


def _endpoint_regexes(patterns: list[Any], prefix: str = "") -> list[str]:
    """The full regex of every endpoint of a URL conf (includes flattened)."""
    found = []
    for entry in patterns:
        own = entry.pattern.regex.pattern
        own = own.removeprefix("^")
        for end in ("\\Z", "$"):
            own = own.removesuffix(end)
        if hasattr(entry, "url_patterns"):
            found += _endpoint_regexes(entry.url_patterns, prefix + own)
        else:
            found.append(prefix + own)
    return found


def subject_route_suffixes(patterns: list[Any]) -> list[str]:
    """What follows the subject identifier in each subject route, as regex text, with named
    groups made anonymous: `/consents`, `/checks/[^/]+`, ..."""
    suffixes = set()
    for regex in _endpoint_regexes(patterns):
        start = regex.find("(?P<subject_id>")
        if start >= 0:
            suffix = regex[_group_end(regex, start) :]
            suffixes.add(re.sub(r"\(\?P<\w+>", "(?:", suffix))
    return sorted(suffixes, key=lambda s: (-len(s), s))


def _suffix_patterns() -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """(for a whole path, for free text) matching an identifier then a route suffix; None
    before Django's URL conf can be read (a gunicorn master), when paths are redacted to
    their end."""
    from django.apps import apps
    from django.conf import settings

    if not (settings.configured and apps.ready) or getattr(_computing, "active", False):
        return None
    urlconf = settings.ROOT_URLCONF
    if urlconf not in _suffixes:
        from django.urls import get_resolver

        _computing.active = True  # importing the URL conf may log: don't come back here
        try:
            suffixes = subject_route_suffixes(get_resolver(urlconf).url_patterns)
        finally:
            _computing.active = False
        alternatives = "|".join(f"(?:{s})" for s in suffixes if s)
        # The identifier is as long as it can be, as Django's greedy `subject_id` makes it;
        # so the suffix kept is the shortest that ends the path.
        _suffixes[urlconf] = (
            re.compile(rf"(?s)(.+)(?P<suffix>{alternatives})\Z"),
            re.compile(rf"(?s)(.+)(?P<suffix>{alternatives}){_PATH_END}"),
        )
    return _suffixes[urlconf]


def _route_suffix(rest: str, *, free_text: bool) -> str | None:
    """The route suffix after a non-empty identifier at the start of `rest`; None if none."""
    patterns = _suffix_patterns()
    if patterns is None:
        return None
    found = patterns[1].match(rest) if free_text else patterns[0].fullmatch(rest)
    return found.group("suffix") if found else None


def redact_target(path: str, query: str = "") -> tuple[str, str]:
    """A request's path (raw or decoded) and query with identifiers redacted. An identifier
    runs from the first `/subjects/` to the route suffix that ends the path; without such a
    suffix it may have run on into what looks like the query (an unencoded `?`), which then
    goes too."""
    path = _spelled_out(path)
    head, sep, rest = path.partition(SUBJECTS)
    if sep:
        suffix = _route_suffix(rest, free_text=False)
        path = head + sep + REDACTED + (suffix or "")
        if suffix is None and query:
            return path, REDACTED
    return path, redact_query(query)


def _spelled_out(text: str) -> str:
    """`text` decoded once when only its decoded form names the subjects route: Django
    decodes a raw path once before routing, so `/%73ubjects/` reaches the same view."""
    if "%" in text and SUBJECTS not in text and SUBJECTS in (decoded := unquote(text)):
        return decoded
    return text


def redact_url(url: str) -> str:
    """A raw URL or request target (path and query, or absolute) with identifiers redacted."""
    path, sep, query = url.partition("?")
    path, query = redact_target(path, query)
    return path + sep + query


def _hides_identifier(value: str, depth: int) -> bool:
    """Whether an encoded parameter value holds a path or query with an identifier in it."""
    decoded = unquote_plus(value)
    if SUBJECTS in decoded:
        return True
    if depth >= _NESTING:
        return decoded != value  # still encoded this deep: not worth the risk
    _, sep, query = decoded.partition("?")
    inner = query if sep else decoded
    return _redact_query(inner, depth + 1) != inner


def _redact_query(query: str, depth: int) -> str:
    if "=" not in query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if not eq or value == REDACTED:
            continue
        if unquote_plus(name) in IDENTIFYING_PARAMS or (
            any(c in value for c in "%/?=") and _hides_identifier(value, depth)
        ):
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def redact_query(query: str) -> str:
    """A raw query string with the values of identifying parameters redacted."""
    return _redact_query(query, 0)


def _redact_region(region: str) -> str:
    """Free text that follows one `/subjects/`, up to the next: the identifier (up to the
    last route suffix that ends a path, or everything) redacted."""
    suffix_at = _suffix_patterns()
    if suffix_at is not None and (found := suffix_at[1].match(region)):
        return REDACTED + region[found.start("suffix") :]
    if _ALREADY_REDACTED.match(region):
        return region  # a line may pass through twice: keep what follows the path
    return REDACTED


_ALREADY_REDACTED = re.compile(re.escape(REDACTED) + _PATH_END)
_QUERY_IN_TEXT = re.compile(r"\?([^\s\"'#]*)")


def redact(text: str) -> str:
    """Free text (a log message) with identifiers in paths and queries redacted."""
    text = _spelled_out(text)
    if SUBJECTS in text:
        head, *regions = text.split(SUBJECTS)
        text = head + "".join(SUBJECTS + _redact_region(region) for region in regions)
    if "?" in text and "=" in text:
        text = _QUERY_IN_TEXT.sub(lambda m: "?" + redact_query(m.group(1)), text)
    return text


class RedactSubjectIdentifiers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = ()
        return True


# --- the request id ---------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
# What an incoming X-Request-ID may be to be kept (nginx's $request_id, a UUID, ...): short,
# and of characters that cannot break a log line or spell an e-mail address.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,63}")
_request_id: ContextVar[str] = ContextVar("request_id", default="")


def request_id_for(incoming: str | None) -> str:
    """The incoming id when it is a sane token, else a new one."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def request_id_get() -> str:
    """The id of the request being served (or that queued the running task); "" if none."""
    return _request_id.get()


def request_id_set(value: str) -> Token[str]:
    return _request_id.set(value)


def request_id_reset(token: Token[str]) -> None:
    _request_id.reset(token)


def request_id_clear(**kwargs: Any) -> None:
    """Forgets the request id once the response is closed (a request_finished receiver)."""
    _request_id.set("")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record ("-" outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, and the
    exception's traceback (redacted like the message) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get() or None,
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def json_logs() -> bool:
    """LOG_FORMAT=json (read here too: gunicorn's master logs before Django's settings)."""
    return (os.environ.get("LOG_FORMAT") or "text").strip().lower() == "json"


# The gunicorn atoms a JSON access line keeps, under these names.
_JSON_ACCESS_FIELDS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "q": "query",
    "H": "protocol",
    "s": "status",
    "B": "bytes",
    "f": "referer",
    "a": "user_agent",
}


# Gunicorn atoms and environ entries holding the request target, and those holding a URL.
_TARGET_ATOMS = frozenset({"r", "U", "q", "{path_info}e", "{query_string}e", "{raw_uri}e"})
_URL_ATOMS = frozenset({"f", "{referer}i", "{http_referer}e"})


def redact_access_atoms(atoms: dict[str, Any], environ: dict[str, Any]) -> dict[str, Any]:
    """Gunicorn's access-log atoms with every identifier redacted: the request target by
    its parts (where the path ends is known there), referers as URLs, the rest as text."""
    path, query = redact_target(environ.get("PATH_INFO") or "", environ.get("QUERY_STRING") or "")
    raw = redact_url(environ.get("RAW_URI") or "")
    method, protocol = environ.get("REQUEST_METHOD"), environ.get("SERVER_PROTOCOL")
    for key, value in list(atoms.items()):
        if key in _URL_ATOMS and isinstance(value, str):
            atoms[key] = redact_url(value)
        elif key not in _TARGET_ATOMS and isinstance(value, str):
            atoms[key] = redact(value)
    atoms.update(
        {
            "r": f"{method} {raw} {protocol}",
            "U": path,
            "q": query,
            "{path_info}e": path,
            "{query_string}e": query,
            "{raw_uri}e": raw,
        }
    )
    return atoms


class RedactingGunicornLogger(GunicornLogger):
    """Gunicorn logger whose access log is built from redacted fields and whose error log
    passes through the same redaction as the service's own logs."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # Setup runs again on every reload (SIGHUP), on the same global logger.
        if not any(isinstance(f, RedactSubjectIdentifiers) for f in self.error_log.filters):
            self.error_log.addFilter(RedactSubjectIdentifiers())
        if json_logs():
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return redact_access_atoms(atoms, environ)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not json_logs():
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "message": f"{atoms.get('r')} {atoms.get('s')}",  # the request line, redacted
            **{name: atoms.get(atom) for atom, name in _JSON_ACCESS_FIELDS.items()},
            "duration_s": request_time.total_seconds(),
            # The id the service answered with (its middleware kept a sane one or made one).
            "request_id": atoms.get("{x-request-id}o"),
        }
        self.access_log.info(json.dumps(line, ensure_ascii=False, default=str))
