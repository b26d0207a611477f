"""How the streamed check reads its body: a cap on line length, a linear line splitter, and
the whole body read before any transaction is opened or any row written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import connection

from consent.checks import services as check_services
from consent.checks import stream as check_stream
from consent.checks.selectors import purpose_rule_get
from consent.errors import LineTooLong
from consent.models import Decision
from governance.actors import Actor
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

STREAM = "/api/v1/checks/stream"


def line(subject_id: str, width: int | None = None) -> bytes:
    """One NDJSON line (without its line end), padded with an ignored field to `width`."""
    raw = json.dumps({"subject_id": subject_id}).encode()
    if width is None:
        return raw
    pad = width - len(raw) - len(b',"pad":""')
    return raw[:-1] + b',"pad":"' + b"x" * pad + b'"}'


def stream_check() -> check_services.StreamCheck:
    return check_services.StreamCheck(
        actor=Actor.system("test"), rule=purpose_rule_get("analytics")
    )


# --- line length ----------------------------------------------------------------------------


def test_stream_line_longer_than_the_cap_is_400_line_too_long_naming_the_line(api, settings):
    cap = settings.CHECK_STREAM_MAX_LINE_BYTES
    assert cap == 16 * 1024
    body = b"\n".join([line("a"), b"", line("b", cap + 1), line("c")]) + b"\n"
    response = api.post(f"{STREAM}?purpose=analytics", raw=body, content_type="x")
    error = assert_error(response, 400, "line_too_long")["error"]
    assert error["detail"] == {"line": 3, "max_bytes": cap}
    assert "Line 3" in error["message"]
    assert not Decision.objects.exists()
    # A line of exactly the cap is fine, and so is one at the end without a line end.
    at_cap = b"\n".join([line("a"), line("b", cap)]) + b"\n" + line("c", cap)
    answered = api.post(f"{STREAM}?purpose=analytics", raw=at_cap, content_type="x")
    assert answered.status_code == 200
    lines = b"".join(answered.streaming_content).decode().splitlines()
    assert [json.loads(x).get("subject_id") for x in lines] == ["a", "b", "c", None]


def test_stream_line_cap_follows_the_setting(api, settings):
    settings.CHECK_STREAM_MAX_LINE_BYTES = 4096
    body = line("a", 4096) + b"\n" + line("b", 4097) + b"\n"
    response = api.post(f"{STREAM}?purpose=analytics", raw=body, content_type="x")
    assert assert_error(response, 400, "line_too_long")["error"]["detail"]["line"] == 2


def test_stream_long_line_is_refused_once_past_the_cap_without_reading_the_rest(purposes):
    """One line sent in many small blocks: refused as soon as it outgrows the cap, so the
    work done is bounded by the cap, not by the line (the old splitter joined its carry to
    every block: quadratic, and the whole line was read and held)."""
    served = 0
    block = b"x" * 1024

    def body() -> Iterator[bytes]:
        nonlocal served
        served += 1
        yield line("a") + b"\n" + block
        for _ in range(10_000):  # 10 MiB of one line if it were read to the end
            served += 1
            yield block

    with pytest.raises(LineTooLong) as refused:
        stream_check().consume(body())
    assert refused.value.detail == {"line": 2, "max_bytes": 16 * 1024}
    # The line's 17th KiB is the first past the cap, and the last block asked for.
    assert served == 17
    assert not Decision.objects.exists()


@pytest.mark.parametrize("block_size", [1, 2, 7, 64, 10_000])
def test_stream_lines_are_split_alike_whatever_the_block_sizes(block_size):
    body = b'{"subject_id":"a"}\n\n  {"subject_id":"b"}  \r\n\n{"subject_id":"c"}'
    blocks = [body[i : i + block_size] for i in range(0, len(body), block_size)]
    batches = list(check_stream.line_batches(blocks, 2, 4096))
    assert batches == [
        ([1, 3], [b'{"subject_id":"a"}', b'{"subject_id":"b"}']),
        ([5], [b'{"subject_id":"c"}']),
    ]


# --- the body is read before any transaction --------------------------------------------


class WatchedBody:
    """A request body (wsgi.input) that notes, at every read, whether the view had opened
    a transaction or written its Decision yet."""

    def __init__(self, data: bytes, block: int = 7) -> None:
        self.data = data
        self.block = block
        self.position = 0
        self.seen: list[tuple[int, bool]] = []

    def read(self, size: int = -1) -> bytes:
        self.seen.append((len(connection.atomic_blocks), Decision.objects.exists()))
        size = self.block if size < 0 else min(size, self.block)
        chunk = self.data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:  # part of the wsgi.input protocol
        return self.read(size)


def test_stream_body_is_read_whole_before_any_transaction_or_write(api):
    """Embedded mode (SQLite, BEGIN IMMEDIATE) holds its one write lock for as long as a
    transaction is open: a stalled upload read inside one stopped every consent write."""
    data = b"".join(line(f"id-{i}") + b"\n" for i in range(20))
    body = WatchedBody(data)
    outside = len(connection.atomic_blocks)  # the test's own transaction(s)
    response = api.client.generic(
        "POST",
        f"{STREAM}?purpose=analytics",
        headers=api._headers(None),
        CONTENT_TYPE="application/x-ndjson",
        CONTENT_LENGTH=str(len(data)),
        **{"wsgi.input": body},
    )
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 21
    assert body.position == len(data)
    assert len(body.seen) > 1  # read in many pieces, the last one included
    assert body.seen == [(outside, False)] * len(body.seen)
    assert Decision.objects.get().total == 20


def test_stream_refused_body_leaves_no_trace_even_when_the_bad_line_comes_last(api):
    data = b"".join(line(f"id-{i}") + b"\n" for i in range(5)) + b'{"subject_id": ""}\n'
    response = api.post(f"{STREAM}?purpose=analytics", raw=data, content_type="x")
    assert assert_error(response, 400, "invalid_subject_id")["error"]["detail"] == {"line": 6}
    assert not Decision.objects.exists()


def test_stream_with_an_empty_body_answers_only_the_summary(api):
    response = api.post(f"{STREAM}?purpose=analytics", raw=b"\n\n", content_type="x")
    assert response.status_code == 200
    [summary] = [json.loads(x) for x in b"".join(response.streaming_content).splitlines()]
    assert (summary["summary"]["allowed"], summary["summary"]["denied"]) == (0, 0)
    assert Decision.objects.get().status == "complete"
