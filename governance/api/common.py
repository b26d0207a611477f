"""What every app's API views share: the calling client, validated input, query parameters
and JSON answers. Nothing here knows an app's models, so consent's and retention's views
(and governance's own) take these from one place."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from governance.actors import Actor
from governance.errors import InvalidRequest
from governance.models import ApiClient


def api_client_of(request: Request) -> ApiClient:
    client = request.auth
    assert isinstance(client, ApiClient)  # guaranteed by HasScope
    return client


def actor_of(request: Request) -> Actor:
    """The audit actor of an API request: its client."""
    return Actor.for_client(api_client_of(request))


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def bool_param(raw: Any, name: str) -> bool:
    """A boolean from JSON or a query string (true/1/false/0/empty); anything else is a 400."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("true", "1", "false", "0", ""):
        return raw.lower() in ("true", "1")
    raise InvalidRequest(f"{name} must be a boolean.", detail={"field": name})


def int_param(raw: str | None, *, name: str, default: int, low: int, high: int) -> int:
    """A query parameter's integer within [low, high]; absent or empty gives the default."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(
            f"{name} must be an integer from {low} to {high}.", detail={"field": name}
        )
    return int(raw)


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...


def iso(value: datetime | None) -> str | None:
    """The one way the service writes an instant: RFC 3339 in UTC with microseconds and Z
    (`2026-12-07T19:44:01.680772Z`), in answers, exports, receipts, webhooks and the admin's
    JSON alike; None as None."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text[:-6] + "Z"


def iso_duration(value: timedelta | None) -> str | None:
    """A duration as ISO 8601, as short as it goes: P30D, PT12H, P1DT0.5S; None as None."""
    if value is None:
        return None
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days, seconds, micros = value.days, value.seconds, value.microseconds
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or micros:
        time += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    if not days and not time:
        return "PT0S"
    return f"{sign}P{f'{days}D' if days else ''}{f'T{time}' if time else ''}"


class Instant(serializers.DateTimeField):
    """DRF's DateTimeField, written by `iso` (DRF's own drops zero microseconds and years
    before 1000 lose their padding under strftime)."""

    def to_representation(self, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            return value
        return iso(value)


# What no API string may hold: control characters (Unicode Cc: C0, DEL and C1) and lone
# UTF-16 surrogates (a JSON "\\ud800" escape), which no UTF-8 store can keep. consent.identity
# applies the same class to subject identifiers.
FORBIDDEN_CHARACTERS = r"\x00-\x1f\x7f-\x9f\ud800-\udfff"
# The schema's pattern names the control characters alone: an ECMA regex in Unicode mode (as
# JSON Schema validators read it) cannot name a surrogate, and JSON text meant for
# interchange holds none.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# What str.strip() takes for whitespace, control characters aside: a non-blank text holds some
# other character. Named one by one, as Python's \s and ECMA's differ (U+FEFF).
WHITESPACE = r"\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


class _NoControlCharacters(RegexValidator):
    """Refuses the characters of `forbidden` (a regex class's body) as a pattern the schema
    shows (drf-spectacular reads RegexValidator.regex), and lone surrogates as well."""

    def __init__(self, forbidden: str, message: str, *, non_blank: bool = False) -> None:
        # \Z, not $: Python's $ also matches before a final line break (the schema shows $).
        body = f"[^{forbidden}]*"
        if non_blank:
            body += f"[^{forbidden}{WHITESPACE}][^{forbidden}]*"
        super().__init__(re.compile(f"^{body}\\Z"), message, code="control_characters")

    def __call__(self, value: Any) -> None:
        super().__call__(value)
        if isinstance(value, str) and _SURROGATES.search(value):
            raise ValidationError(self.message, code=self.code)


SINGLE_LINE = _NoControlCharacters(CONTROL_CHARACTERS, "Control characters are not allowed.")
# Free text (a description, a reason) may also hold tabs and break lines.
_PROSE_FORBIDDEN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
PROSE = _NoControlCharacters(
    _PROSE_FORBIDDEN, "Control characters other than tabs and line breaks are not allowed."
)
PROSE_NOT_BLANK = _NoControlCharacters(
    _PROSE_FORBIDDEN,
    "Must hold a character other than whitespace; control characters other than tabs and "
    "line breaks are not allowed.",
    non_blank=True,
)


class Flag(serializers.BooleanField):
    """A JSON boolean and nothing else (DRF's BooleanField also takes 1, "yes", "on")."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field({"type": "string", "format": "duration", "example": "P30D"})
class Duration(serializers.DurationField):
    """A duration as ISO 8601, in (Django's parse_duration reads it) and out (iso_duration)."""

    def to_representation(self, value: timedelta) -> str:
        return iso_duration(value) or ""


class DistinctList(serializers.ListField):
    """A list whose items must differ: the schema says uniqueItems, and the service that
    reads it refuses duplicates with its own error code."""


class _StrictString(serializers.CharField):
    """A JSON string and nothing else (DRF's CharField also takes numbers as their text)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


@extend_schema_field({"type": "string", "format": "date-time"})
class InstantText(_StrictString):
    """An instant taken as text and parsed by the view (consent.checks.inputs.as_of_parse),
    declared in the schema as the date-time it must be."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(SINGLE_LINE)


class Text(_StrictString):
    """A single-line string of the API: no control characters, stated in the schema as a
    pattern, so the server refuses exactly what the schema excludes. Kept as sent (no
    trimming: " " is a string of length 1, as the schema says, not a blank one)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(SINGLE_LINE)


class Prose(_StrictString):
    """Free text: like Text, but tabs and line breaks are allowed. `non_blank=True`: it must
    also hold something other than whitespace (the schema's pattern says so)."""

    def __init__(self, *, non_blank: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(PROSE_NOT_BLANK if non_blank else PROSE)


def json_response(body: Any, status_code: int = 200) -> HttpResponse:
    """A JSON answer without DRF's rendering (the hot paths and the streamed ones)."""
    return HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status_code, content_type="application/json"
    )


class JSONErrorsOnly:
    """For views that answer NDJSON or CSV themselves; DRF renders only their errors, as JSON.

    Skipping DRF's negotiation keeps `Accept: application/x-ndjson` and `?format=csv` from
    being refused (406/404) before the view runs.
    """

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        renderer = JSONRenderer()
        return renderer, renderer.media_type
