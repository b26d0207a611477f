"""The one JSON parser of request bodies: refuses bodies above the view's limit with a 413
before parsing, and malformed JSON, including JSON nested deeper than MAX_JSON_DEPTH, with a
400 invalid_request (never a RecursionError's 500)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from governance.errors import PayloadTooLarge, TooDeeplyNested

# No body of this API nests beyond a handful of levels; 32 leaves room and stays far below
# the interpreter's recursion limit, which the C decoder would otherwise hit first.
MAX_JSON_DEPTH = 32


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


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether parsed JSON has more than `limit` levels of arrays and objects (a scalar has
    none, `[]` one). Level by level, without recursion."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            deeper.extend([c for c in children if isinstance(c, dict | list)])
        level = deeper
    return False


def may_nest_deeper_than(raw: bytes, limit: int) -> bool:
    """False when `raw` holds too few brackets to nest beyond `limit` (the usual case, one
    C-level count per bracket kind); True means: walk the parsed value to know."""
    return raw.count(b"[") + raw.count(b"{") > limit


def too_deeply_nested(*, line: int | None = None) -> TooDeeplyNested:
    """The error for JSON past MAX_JSON_DEPTH; `line` names an NDJSON line."""
    where = "Malformed JSON" if line is None else f"Line {line}"
    detail: dict[str, int] = {"max_depth": MAX_JSON_DEPTH}
    if line is not None:
        detail["line"] = line
    return TooDeeplyNested(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels.", detail=detail)


def json_parse(raw: bytes) -> Any:
    """A request body (UTF-8 JSON) as Python values; 400 when malformed or too deep."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise too_deeply_nested() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"Malformed JSON: {exc}") from exc
    if may_nest_deeper_than(raw, MAX_JSON_DEPTH) and nested_deeper_than(data, MAX_JSON_DEPTH):
        raise too_deeply_nested()
    return data


class LimitedJSONParser(JSONParser):
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        request = (parser_context or {}).get("request")
        return json_parse(read_limited(stream, request, body_limit(parser_context)))
