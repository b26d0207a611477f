"""No subject identifier, nor any piece of one, reaches a log line.

Table-driven: awkward identifiers x the ways they are put in a URL x every subject route
(read from the URL conf) and every admin changelist search, against the app, with every
log sink captured: the service's own request log and gunicorn's access and error logs as
RedactingGunicornLogger writes them. A new sink (JSON logs, say) is one more entry in
SINKS (JSON logs are: LOG_FORMAT=json's service log and gunicorn's); a new identifier one
more entry in IDENTIFIERS.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import get_resolver, reverse
from gunicorn.config import Config

from governance.logging import (
    REDACTED,
    JsonFormatter,
    RedactingGunicornLogger,
    RedactSubjectIdentifiers,
    redact,
    redact_url,
    subject_route_suffixes,
)

pytestmark = pytest.mark.django_db

# (name, identifier): each piece of 4+ characters between separators must be distinctive,
# since the test greps for it.
IDENTIFIERS = [
    ("apostrophe", "dermot'mcquillan"),
    ("slashes", "tenant7/zebulon/quorra"),
    ("spaces", "wilbur thistlewood"),
    ("double-quote", 'ignatius"reilly'),
    ("unicode", "zoëlle-ünïcörn-名前の人"),
    ("query-characters", "percival?gwendolyn#lancelot&mordred=tristram"),
    ("route-lookalike", "octavia/consents/evander/checks/cassius"),
    ("email", "bartholomew.cubbins@oobleck.test"),
    ("percent-and-plus", "wendeline%41+rutherford"),
]
# Words of the routes themselves, which are logged as they should be.
ROUTE_WORDS = {"consents", "history", "checks", "decisions", "withdrawals", "test"}


# How an identifier is put in a path: percent-encoded whole, or with the characters a
# careless client leaves raw (slashes, quotes, ...; `?`, `#`, `%` and spaces must be encoded
# for the request to reach the route at all).
def _encoded(identifier: str) -> str:
    return quote(identifier, safe="")


def _raw(identifier: str) -> str:
    return quote(identifier, safe="/'\"@&=+:,;!$()*~")


FORMS = [("encoded", _encoded), ("raw", _raw)]


def fragments(identifier: str) -> set[str]:
    pieces = re.split(r"[/'\" ?#&=@.+%\-]+", identifier)
    return {p for p in pieces if len(p) >= 4 and p.lower() not in ROUTE_WORDS}


def needles(identifier: str) -> set[str]:
    """The identifier and each fragment, in every spelling a log line could hold them."""
    found = set()
    for piece in {identifier, *fragments(identifier)}:
        found |= {
            piece,
            quote(piece, safe=""),
            quote(piece, safe="/"),
            quote_plus(piece),
            json.dumps(piece)[1:-1],
            json.dumps(piece, ensure_ascii=False)[1:-1],
            # A WSGI server hands paths over as latin-1 text: UTF-8 bytes read as latin-1.
            piece.encode("utf-8").decode("latin-1"),
        }
    return found


# --- the routes -----------------------------------------------------------------------------


def subject_routes() -> list[str]:
    """A path template per subject route of the URL conf ({id} for the identifier)."""
    prefix = reverse("subject-consents", kwargs={"subject_id": "ID"}).rsplit("ID", 1)[0]
    templates = []
    for suffix in subject_route_suffixes(get_resolver().url_patterns):
        # Groups after the identifier (a purpose) get a plain value.
        concrete = re.sub(r"\(\?:[^()]*\)", "analytics", suffix).replace("\\", "")
        templates.append(prefix + "{id}" + concrete)
    return templates


# Query parameters that carry identifiers, on any path.
QUERY_ROUTES = [
    "/api/v1/purposes?subject_id={q}",
    "/api/v1/decisions/8d3c9c3e-1d5e-4a59-9a41-0d8b2b6f6b7e?identifier={q}&limit=1",
]


def admin_searches() -> list[str]:
    """The changelist search (`?q=`) of every model in the admin."""
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") + "?q={q}"
        for model in admin.site._registry
    ]


# --- the log sinks --------------------------------------------------------------------------


def _redacting_handlers() -> list[logging.StreamHandler[Any]]:
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, RedactSubjectIdentifiers) for f in h.filters)
    ]
    assert handlers, "the console handler must carry the redaction filter"
    return handlers


class ServiceLog:
    """The service's own logs (Django's request log among them), through the configured
    handlers that carry the redaction filter."""

    name = "service"

    @contextmanager
    def capture(self) -> Iterator[Callable[[Any, str], None]]:
        handlers = _redacting_handlers()
        self.buffer = io.StringIO()
        previous = [h.setStream(self.buffer) for h in handlers]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.DEBUG)
        try:
            yield lambda response, raw_target: None  # Django logs by itself
        finally:
            root.setLevel(level)
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)

    def text(self) -> str:
        return self.buffer.getvalue()


class GunicornLog:
    """Gunicorn's access log, in each format given, and its error log's request line, as
    RedactingGunicornLogger writes them, fed the WSGI environ of each request the app
    served."""

    name = "gunicorn"

    def __init__(self, access_formats: dict[str, str]) -> None:
        self.access_formats = access_formats

    @contextmanager
    def capture(self) -> Iterator[Callable[[Any, str], None]]:
        with tempfile.TemporaryDirectory() as folder:
            cfg = Config()
            self.files = [Path(folder) / "access.log", Path(folder) / "error.log"]
            cfg.set("accesslog", str(self.files[0]))
            cfg.set("errorlog", str(self.files[1]))
            logger = RedactingGunicornLogger(cfg)
            self.lines = 0

            def record(response: Any, raw_target: str) -> None:
                environ = {**response.wsgi_request.META, "RAW_URI": raw_target}
                headers = [
                    (k.removeprefix("HTTP_").replace("_", "-"), v)
                    for k, v in environ.items()
                    if k.startswith("HTTP_")
                ]
                resp = SimpleNamespace(
                    status=f"{response.status_code} X",
                    sent=len(getattr(response, "content", b"")),
                    headers=list(response.items()),
                )
                req = SimpleNamespace(headers=headers)
                for access_format in self.access_formats.values():
                    cfg.set("access_log_format", access_format)
                    logger.access(resp, req, environ, timedelta(milliseconds=1))
                # What gunicorn's worker logs when a request fails.
                logger.error("Error handling request %s", raw_target)
                self.lines += len(self.access_formats) + 1

            try:
                yield record
            finally:
                # The loggers are global: leave no handler on a deleted file behind.
                for log in (logger.access_log, logger.error_log):
                    for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                        handler.close()
                        log.removeHandler(handler)
                self.captured = "".join(f.read_text(encoding="utf-8") for f in self.files)

    def text(self) -> str:
        assert self.captured.count("\n") >= self.lines  # every line was written
        return self.captured


class JsonServiceLog(ServiceLog):
    """The service's own logs as LOG_FORMAT=json writes them: one object per line, each
    request's lines with its id. A twin of the console handler (its filters, the JSON
    formatter) sits beside it wherever it is attached, since ServiceLog holds its stream."""

    name = "service-json"

    @contextmanager
    def capture(self) -> Iterator[Callable[[Any, str], None]]:
        (console,) = _redacting_handlers()
        self.buffer = io.StringIO()
        twin = logging.StreamHandler(self.buffer)
        twin.setFormatter(JsonFormatter())
        for f in console.filters:
            twin.addFilter(f)
        loggers = [logging.getLogger()] + [
            logger
            for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and console in logger.handlers
        ]
        for logger in loggers:
            logger.addHandler(twin)
        self.request_ids: set[str] = set()
        try:
            yield lambda response, raw_target: self.request_ids.add(response["X-Request-ID"])
        finally:
            for logger in loggers:
                logger.removeHandler(twin)

    def text(self) -> str:
        text = super().text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines and all(line.keys() >= JSON_KEYS for line in lines)
        requests = [line for line in lines if line["logger"] == "django.request"]
        assert requests and all(line["request_id"] in self.request_ids for line in requests)
        return text


class GunicornJsonLog(GunicornLog):
    """Gunicorn's access and error logs with LOG_FORMAT=json. Gunicorn's loggers are global,
    so the requests are replayed through it once GunicornLog has let go of them."""

    name = "gunicorn-json"

    def __init__(self) -> None:
        super().__init__({"json": "(LOG_FORMAT=json writes its own fields)"})

    @contextmanager
    def capture(self) -> Iterator[Callable[[Any, str], None]]:
        self.served: list[tuple[Any, str]] = []
        yield lambda response, raw_target: self.served.append((response, raw_target))

    def text(self) -> str:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LOG_FORMAT", "json")
            with super().capture() as record:
                for response, raw_target in self.served:
                    record(response, raw_target)
        text = super().text()
        lines = [json.loads(line) for line in text.splitlines()]
        access = [line for line in lines if line["logger"] == "gunicorn.access"]
        assert len(access) == len(self.served)
        assert all(line["request_id"] for line in access)
        assert all(line.keys() >= JSON_KEYS for line in lines)
        return text


JSON_KEYS = {"time", "level", "logger", "message", "request_id"}

SINKS = [
    ServiceLog(),
    JsonServiceLog(),
    GunicornLog(
        {
            "default": Config().access_log_format,  # the Dockerfile's
            "every-target-atom": '%(h)s "%(r)s" %(s)s "%(f)s" "%(a)s" %(U)s ?%(q)s '
            "%({raw_uri}e)s %({referer}i)s %({path_info}e)s %({query_string}e)s",
        }
    ),
    GunicornJsonLog(),
]


# --- the test -------------------------------------------------------------------------------


@pytest.fixture
def staff(staff_client) -> Client:
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-dpo-123")
    return staff_client(user, Client(raise_request_exception=False))


def _drive(identifier: str, api: Any, staff: Client, record: Callable[[Any, str], None]) -> None:
    """Every subject route (GET and POST, each form of the id), the identifying query
    parameters and every admin search, anonymous too, each with a telling Referer."""
    client = Client(raise_request_exception=False)
    auth = {"Authorization": f"Bearer {api.key}"}
    for template in subject_routes():
        for _, form in FORMS:
            target = template.format(id=form(identifier))
            referer = "https://app.example/account" + target
            headers = {**auth, "Referer": referer}
            record(client.get(target, headers=headers), target)
            response = client.post(target, "{}", content_type="application/json", headers=headers)
            record(response, target)
    for template in QUERY_ROUTES:
        target = template.format(q=quote_plus(identifier))
        record(client.get(target, headers=auth), target)
    anonymous = Client(raise_request_exception=False)
    for template in admin_searches():
        target = template.format(q=quote_plus(identifier))
        headers = {"Referer": "https://gov.example" + target}
        record(staff.get(target, headers=headers), target)
    # Signed out: the admin redirects to its login page with the search in `next`.
    target = admin_searches()[0].format(q=quote_plus(identifier))
    redirected = anonymous.get(target)
    record(redirected, target)
    record(anonymous.get(redirected["Location"]), redirected["Location"])


@pytest.mark.parametrize(("name", "identifier"), IDENTIFIERS, ids=[n for n, _ in IDENTIFIERS])
def test_no_identifier_or_fragment_reaches_any_log(api, staff, name, identifier):
    with ExitStack() as stack:
        recorders = [stack.enter_context(sink.capture()) for sink in SINKS]

        def record(response: Any, target: str) -> None:
            for recorder in recorders:
                recorder(response, target)

        _drive(identifier, api, staff, record)
    texts = {sink.name: sink.text() for sink in SINKS}
    # The requests were logged...
    assert REDACTED in texts["service"]
    assert "/subjects/<redacted>/consents" in texts["gunicorn"]
    for sink, text in texts.items():  # ...without the identifier or any piece of it
        leaked = sorted(n for n in needles(identifier) if n in text)
        assert not leaked, (sink, leaked, [line for line in text.splitlines() if leaked[0] in line])


def test_every_subject_route_is_driven():
    # The routes come from the URL conf: a new subject route is driven without an edit here.
    routes = subject_routes()
    assert "/api/v1/subjects/{id}/consents" in routes
    assert "/api/v1/subjects/{id}/checks/analytics" in routes
    assert len(routes) >= 5


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ('"GET /api/v1/subjects/o\'brien/consents HTTP/1.1" 200', "/consents HTTP/1.1"),
        ("Not Found: /api/v1/subjects/a b/history", "/history"),
        ("Unauthorized: /api/v1/subjects/x/consents y/decisions", "/decisions"),
        ("Bad Request: /api/v1/subjects/anyone", "/subjects/<redacted>"),
        ('"GET /api/v1/subjects/<redacted>anyone HTTP/1.1" 404', "/subjects/<redacted>"),
        ('"GET /admin/retention/legalhold/?q=erin%40x&o=1 HTTP/1.1" 200', "q=<redacted>&o=1"),
        ("/admin/consent/subject/1/change/?_changelist_filters=q%3Derin", "filters=<redacted>"),
        ("/admin/login/?next=/admin/consent/subject/%3Fq%3Derin", "next=<redacted>"),
    ],
)
def test_free_text_redaction_keeps_the_route_and_drops_the_identifier(line, kept):
    cleaned = redact(line)
    assert kept in cleaned
    assert redact(cleaned) == cleaned  # a line may pass through twice
    for word in ("brien", "a b", "x/consents y", "anyone", "erin"):
        assert word not in cleaned


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/%73ubjects/mallory%40x/consents",
        "/api/v1/sub%6Aects/mallory/history",
        "/api/v1/%73ubjects/mallory",
    ],
)
def test_a_percent_encoded_route_word_is_redacted_like_the_plain_one(target):
    # Django decodes the path once before routing: these reach the subject views.
    for cleaned in (redact_url(target), redact(f'"GET {target} HTTP/1.1" 200')):
        assert "mallory" not in cleaned
        assert "/subjects/<redacted>" in cleaned


def test_a_raw_question_mark_in_an_identifier_takes_the_query_with_it():
    # No route ends the path, so what looks like a query may be the identifier's end.
    assert redact_url("/api/v1/subjects/percival?gwen/consents") == (
        "/api/v1/subjects/<redacted>?<redacted>"
    )
    assert redact_url("/api/v1/subjects/p/history?limit=2") == (
        "/api/v1/subjects/<redacted>/history?limit=2"
    )
