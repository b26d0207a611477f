"""The stream endpoint through a real gunicorn, with clients that send everything first."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from consent.models import Decision
from tests import factories
from tests.live_gunicorn import gunicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Far more answer bytes (~10 MB) than loopback socket buffers hold (a few MB at most): a
# server that answered while the client was still sending would deadlock with these clients.
MANY = 200_000


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock(), gunicorn_server() as base:
        yield base


def _seed() -> str:
    factories.seed_purposes()
    for i in range(3):
        factories.record(f"user-{i}", analytics=True)
    _, key = factories.api_client(scopes=["checks"])
    return key


def _body(n: int) -> bytes:
    return "".join(f'{{"subject_id": "user-{i}"}}\n' for i in range(n)).encode()


def _check(lines: list[str], n: int) -> dict[str, Any]:
    assert len(lines) == n + 1
    first = json.loads(lines[0])
    assert first == {"subject_id": "user-0", "allowed": True, "reason": "granted"}
    assert json.loads(lines[3]) == {
        "subject_id": "user-3",
        "allowed": False,
        "reason": "no_consent",
    }
    summary = json.loads(lines[-1])["summary"]
    assert (summary["allowed"], summary["denied"]) == (3, n - 3)
    return summary


def test_requests_sending_the_whole_body_first_gets_every_answer(server):
    key = _seed()
    response = requests.post(
        f"{server}/api/v1/checks/stream?purpose=analytics&lineage=true",
        data=_body(MANY),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        timeout=300,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"] == "application/x-ndjson"
    summary = _check(response.text.splitlines(), MANY)
    decision = Decision.objects.get(pk=summary["decision_id"])
    assert (decision.status, decision.total, decision.allowed_count) == ("complete", MANY, 3)


def test_urllib_and_a_chunked_upload_work_too(server):
    key = _seed()
    request = urllib.request.Request(  # noqa: S310 - loopback URL built by the test
        f"{server}/api/v1/checks/stream?purpose=analytics",
        data=_body(MANY),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as answer:  # noqa: S310
        _check(answer.read().decode().splitlines(), MANY)

    def chunks() -> Iterator[bytes]:
        body = _body(1000)
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    chunked = requests.post(
        f"{server}/api/v1/checks/stream?purpose=analytics",
        data=chunks(),  # no length: sent with Transfer-Encoding: chunked
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        timeout=300,
    )
    assert chunked.status_code == 200, chunked.text[:500]
    _check(chunked.text.splitlines(), 1000)


def test_a_malformed_line_is_a_400_through_the_server(server):
    key = _seed()
    response = requests.post(
        f"{server}/api/v1/checks/stream?purpose=analytics",
        data=_body(10) + b"not json\n",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["error"]["detail"] == {"line": 11}
    assert not Decision.objects.exists()
