"""A JSON parser that refuses bodies above the view's limit with a 413, before parsing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from governance.errors import PayloadTooLarge


def body_limit(parser_context: Mapping[str, Any] | None) -> int:
    view = (parser_context or {}).get("view")
    return int(getattr(view, "max_body_bytes", None) or settings.CONSENT_MAX_BODY_BYTES)


def read_limited(stream: Any, request: Any, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
    return bytes(data)


class LimitedJSONParser(JSONParser):
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        request = (parser_context or {}).get("request")
        raw = read_limited(stream, request, body_limit(parser_context))
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
        except RecursionError as exc:
            raise ParseError("Malformed JSON: nested too deeply.") from exc
