"""The Python client in clients/python/, against a real gunicorn serving the test database."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.utils import timezone

from consent import services
from consent.models import Decision
from governance.actors import Actor
from tests import factories
from tests.live_gunicorn import free_port, gunicorn_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from consent_client import (
    BadRequest,
    ConsentClient,
    Forbidden,
    TransientError,
    Unauthorized,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock(), gunicorn_server() as base:
        yield base


@pytest.fixture
def client(server: str) -> ConsentClient:
    factories.seed_purposes()
    for name in ("ann", "bob", "cy"):
        factories.record(name, ml_training=True)
    factories.record("dee", ml_training=False)
    _, key = factories.api_client(scopes=["checks"])
    return ConsentClient(server, key, retries=1, backoff=0)


def test_check_answers_allowed_denied_and_leaves_a_decision(client):
    result = client.check(["ann", "dee", "eve"], "ml_training", explain=True, lineage=True)
    assert result.allowed == ["ann"] and result.denied == ["dee", "eve"]
    assert [r["reason"] for r in result.results] == ["granted", "refused", "no_consent"]
    decision = client.decision(result.decision_id)
    assert (decision["allowed"], decision["denied"], decision["lineage"]) == (1, 2, True)
    assert Decision.objects.get(pk=result.decision_id).status == "complete"


def test_check_as_of_a_past_instant(client):
    when = timezone.now() - timedelta(days=3)
    services.consent_record(
        subject_id="old",
        decisions=[services.DecisionInput(purpose="ml_training", granted=True)],
        actor=Actor.system("test"),
        now=when,
    )
    factories.record("old", ml_training=False)
    assert client.check(["old"], "ml_training").allowed == []
    assert client.check(["old"], "ml_training", as_of=when + timedelta(hours=1)).allowed == ["old"]
    one = client.check_one("old", "ml_training", as_of=when + timedelta(hours=1))
    assert (one.allowed, one.reason) == (True, "granted")
    assert client.check_one("old", "ml_training").reason == "withdrawn"


def test_filter_allowed_consumes_the_iterable_chunk_by_chunk(client):
    consumed: list[str] = []

    def ids() -> Iterator[str]:
        for name in ["ann", "dee", "bob", "eve", "cy", "zed", "ann"]:
            consumed.append(name)
            yield name

    allowed = client.filter_allowed(ids(), "ml_training", chunk_size=2)
    assert next(allowed) == "ann"
    assert consumed == ["ann", "dee"]  # only the first chunk was read
    assert list(allowed) == ["bob", "cy", "ann"]
    assert Decision.objects.count() == 4


def test_stream_yields_each_answer_and_keeps_the_summary(client):
    answers = list(client.stream((f"x{i}" for i in range(1000)), "ml_training", lineage=True))
    answers += list(client.stream(["ann", "dee"], "ml_training"))
    assert len(answers) == 1002
    assert answers[-2:] == [
        {"subject_id": "ann", "allowed": True, "reason": "granted"},
        {"subject_id": "dee", "allowed": False, "reason": "refused"},
    ]
    assert client.last_summary is not None
    assert (client.last_summary["allowed"], client.last_summary["denied"]) == (1, 1)


def test_keep_allowed_keeps_the_allowed_rows_of_a_dataframe(client):
    df = pd.DataFrame({"user_id": ["ann", "dee", "bob", "ann", "eve"], "clicks": [1, 2, 3, 4, 5]})
    kept = client.keep_allowed(df, "ml_training", column="user_id", chunk_size=2)
    assert kept["user_id"].tolist() == ["ann", "bob", "ann"]
    assert kept["clicks"].tolist() == [1, 3, 4]


def test_4xx_raise_typed_errors(client, server):
    with pytest.raises(BadRequest) as bad:
        client.check(["ann"], "no_such_purpose")
    assert bad.value.code == "unknown_purpose" and bad.value.status == 400
    with pytest.raises(BadRequest) as line:
        list(client.stream(["ann", ""], "ml_training"))
    assert line.value.detail == {"line": 2}
    with pytest.raises(Unauthorized):
        ConsentClient(server, "sk_wrong").check(["ann"], "ml_training")
    _, reader = factories.api_client(scopes=["consent:read"])
    with pytest.raises(Forbidden) as forbidden:
        ConsentClient(server, reader).check(["ann"], "ml_training")
    assert forbidden.value.code == "permission_denied"
    with pytest.raises(ValueError, match="at most"):
        client.check(["a"] * 100_001, "ml_training")


class _Flaky(BaseHTTPRequestHandler):
    """Fails with 503 (then 429 with Retry-After) before answering: a transient outage."""

    answers: list[tuple[int, dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body: dict[str, Any] = (
            {"decision_id": "d", "purpose": "p", "as_of": "t", "allowed": ["a"], "denied": []}
            if status == 200
            else {"error": {"code": "unavailable", "message": "down", "detail": None}}
        )
        raw = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(raw))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


def test_transient_errors_are_retried_with_backoff_then_given_up():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        waits: list[float] = []
        _Flaky.answers = [(503, {}), (429, {"Retry-After": "7"})]
        client = ConsentClient(base, "sk", retries=3, backoff=0.5, sleep=waits.append)
        assert client.check(["a"], "p").allowed == ["a"]
        assert waits == [0.5, 7.0]
        _Flaky.answers = [(503, {})] * 5
        with pytest.raises(TransientError) as gave_up:
            ConsentClient(base, "sk", retries=2, backoff=0, sleep=waits.append).check(["a"], "p")
        assert gave_up.value.status == 503
    finally:
        httpd.shutdown()
        httpd.server_close()
    closed = ConsentClient(f"http://127.0.0.1:{free_port()}", "sk", retries=2, sleep=waits.append)
    with pytest.raises(TransientError):
        closed.check(["a"], "p")
