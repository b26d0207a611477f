"""One rule for subject identifiers at every endpoint that takes one, with one error code,
and JSON nested too deeply refused with a 400 by both check endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from consent import identity
from consent.models import ConsentEvent, Decision, Subject
from retention.models import AccessRequest, ErasureRequest
from tests.conftest import Api, assert_error

pytestmark = pytest.mark.django_db

WRITE = {"decisions": [{"purpose": "analytics", "granted": True}], "indication_method": "button"}


def _json(payload: dict[str, Any]) -> str:
    # ensure_ascii (the default) writes a lone surrogate as the escape "\ud800", as a
    # client's JSON would; the id itself never passes through UTF-8 on the way.
    return json.dumps(payload)


def _path(
    template: str, method: str = "get", body: dict[str, Any] | None = None
) -> Callable[[Api, str], Any]:
    def send(api: Api, subject_id: str) -> Any:
        path = "/api/v1/subjects/" + quote(subject_id, safe="") + template
        return api.get(path) if method == "get" else api.post(path, body or {})

    send.in_path = True  # type: ignore[attr-defined]
    return send


def _body(path: str, payload: Callable[[str], dict[str, Any]]) -> Callable[[Api, str], Any]:
    return lambda api, subject_id: api.post(path, raw=_json(payload(subject_id)))


def _stream(api: Api, subject_id: str) -> Any:
    raw = _json({"subject_id": "fine"}) + "\n" + _json({"subject_id": subject_id}) + "\n"
    return api.post("/api/v1/checks/stream?purpose=analytics", raw=raw, content_type="x")


ENDPOINTS: dict[str, Callable[[Api, str], Any]] = {
    "single check": _path("/checks/analytics"),
    "subject consents": _path("/consents"),
    "subject history": _path("/history"),
    "subject decisions": _path("/decisions"),
    "withdrawal": _path("/withdrawals", method="post"),
    "restriction read": _path("/restriction"),
    "restriction": _path("/restriction", method="post", body={"reason": "disputed"}),
    "consent write": _body("/api/v1/consents", lambda s: {"subject_id": s, **WRITE}),
    "bulk check": _body(
        "/api/v1/checks", lambda s: {"purpose": "analytics", "subject_ids": ["fine", s]}
    ),
    "streamed check": _stream,
    "erasure request": _body("/api/v1/erasure-requests", lambda s: {"subject_id": s}),
    "access request": _body("/api/v1/access-requests", lambda s: {"subject_id": s}),
    "subject token": _body("/api/v1/subject-tokens", lambda s: {"subject_id": s}),
}

BAD_IDS = {
    "NEL U+0085": "a\x85b",
    "lone surrogate": "a\ud800b",
    "NUL": "a\x00b",
    "too long": "x" * 256,
    "empty": "",
    "C0 control": "a\x01b",
    "tab": "a\tb",
    "line feed": "a\nb",
    "DEL": "a\x7fb",
    "C1 control": "a\x9fb",
}

# What a URL path cannot carry: an empty segment does not reach the view (404), and a
# surrogate has no UTF-8 form to percent-encode.
NOT_IN_A_PATH = {"lone surrogate", "empty"}


def nothing_written() -> bool:
    return not (
        Subject.objects.exists()
        or ConsentEvent.objects.exists()
        or Decision.objects.exists()
        or ErasureRequest.objects.exists()
        or AccessRequest.objects.exists()
    )


CASES = [
    pytest.param(send, bad, id=f"{endpoint}-{name}")
    for endpoint, send in ENDPOINTS.items()
    for name, bad in BAD_IDS.items()
    if not (getattr(send, "in_path", False) and name in NOT_IN_A_PATH)
]


@pytest.mark.parametrize(("send", "bad"), CASES)
def test_every_endpoint_refuses_the_same_ids_with_invalid_subject_id(api, send, bad):
    assert_error(send(api, bad), 400, "invalid_subject_id")
    assert nothing_written()


@pytest.mark.parametrize("send", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_every_endpoint_takes_an_unusual_but_valid_id(api, send):
    # Spaces, a slash, a quote, non-ASCII and a character beyond the BMP, 255 of them.
    unusual = ("tenant/7 'Zoë' 😀 " * 20)[:255]
    assert identity.identifier_ok(unusual)
    response = send(api, unusual)
    assert response.status_code < 300, response.content


def test_the_rule_is_the_identity_modules_alone():
    for bad in BAD_IDS.values():
        assert not identity.identifier_ok(bad)
    with pytest.raises(identity.InvalidSubjectId):
        identity.validate_identifiers(["ok", "a\x85b"])
    for good in ["a", "x" * 255, "a\u2028b", "tenant/7", "😀"]:
        assert identity.identifier_ok(good)
        identity.validate_identifiers([good])


# --- nesting --------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A JSON value `depth` arrays deep."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_bulk_check_refuses_deep_nesting_with_400(api, depth):
    raw = '{"purpose": "analytics", "subject_ids": ["a"], "x": ' + nested(depth - 1) + "}"
    body = assert_error(api.post("/api/v1/checks", raw=raw), 400, "invalid_request")
    assert body["error"]["detail"] == {"max_depth": 32}
    assert not Decision.objects.exists()


def test_json_bodies_up_to_32_levels_are_parsed(api):
    raw = '{"purpose": "analytics", "subject_ids": ["a"], "x": ' + nested(31) + "}"
    assert api.post("/api/v1/checks", raw=raw).status_code == 200
    write = '{"subject_id": "a", "indication_method": "button", "x": ' + nested(31) + ", "
    write += '"decisions": [{"purpose": "analytics", "granted": true}]}'
    assert api.post("/api/v1/consents", raw=write).status_code == 201
    too_deep = write.replace(nested(31), nested(32))
    assert_error(api.post("/api/v1/consents", raw=too_deep), 400, "invalid_request")


@pytest.mark.parametrize("depth", [33, 5000])
def test_streamed_check_refuses_a_deeply_nested_line_with_400_naming_it(api, depth):
    lines = [_json({"subject_id": f"id-{i}"}) for i in range(3)]
    lines.insert(2, '{"subject_id": "x", "y": ' + nested(depth - 1) + "}")
    raw = "\n".join(lines) + "\n"
    response = api.post("/api/v1/checks/stream?purpose=analytics", raw=raw, content_type="x")
    body = assert_error(response, 400, "invalid_request")
    assert body["error"]["detail"] == {"line": 3, "max_depth": 32}
    assert not Decision.objects.exists()


def test_streamed_check_refuses_100k_nested_brackets_with_400(api):
    raw = '{"subject_id": "x", "y": ' + nested(100_000) + "}\n"
    response = api.post("/api/v1/checks/stream?purpose=analytics", raw=raw, content_type="x")
    assert_error(response, 400, "line_too_long")  # 200 KB on one line: refused at 16 KiB


def test_streamed_check_lines_up_to_32_levels_are_answered(api):
    raw = '{"subject_id": "a", "y": ' + nested(31) + '}\n{"subject_id": "b[{"}\n'
    response = api.post("/api/v1/checks/stream?purpose=analytics", raw=raw, content_type="x")
    assert response.status_code == 200
    answered = [json.loads(x) for x in b"".join(response.streaming_content).splitlines()]
    assert [a.get("subject_id") for a in answered] == ["a", "b[{", None]


def test_legal_hold_admin_form_applies_the_rule_and_keeps_ids_exactly(db):
    from retention.admin import LegalHoldForm

    def form(subject_id: str) -> LegalHoldForm:
        return LegalHoldForm(
            data={"subject_id": subject_id, "namespace": "account", "reason": "litigation"}
        )

    for bad in ("a\x85b", "a\x01b", "x" * 256):
        assert not form(bad).is_valid()
    padded = form(" padded ")
    assert padded.is_valid(), padded.errors
    assert padded.cleaned_data["subject_id"] == " padded "  # not the subject "padded"
