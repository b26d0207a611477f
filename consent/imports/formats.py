"""Reading an import file: its format (jsonl, csv, json, jsonld), the mapping that turns
another tool's columns and values into ours, and the check of every row against the
purposes and notices. Nothing here writes; services.import_check runs it over a whole file.

A mapping is a JSON file (docs/imports.md): `fields` says where each of our fields is in a
row (a column name, or a dotted path into a JSON record; a list joins several values with
":"), `values` translates values (a value mapped to null leaves the row out), `defaults`
fills fields a row lacks, `records` says where a JSON document keeps its list of records,
and `each` turns every item of a list inside a record into a row of its own (a path that
starts with "^" then reads the enclosing record).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from consent.errors import ImportInvalid
from consent.identity import identifier_ok
from consent.models import AFFIRMATIVE_METHODS, IndicationMethod, Subject
from governance.errors import InvalidRequest

FORMATS = ("jsonl", "csv", "json", "jsonld")
FIELDS = (
    "subject_id",
    "purpose",
    "granted",
    "effective_at",
    "external_id",
    "notice_version",
    "namespace",
    "indication_method",
)
REQUIRED = FIELDS[:5]
MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
# The mapping a JSON-LD export of ours is read with when no other is named.
JSONLD_MAPPING = "iso27560"
_MAPPING_KEYS = {"description", "format", "records", "each", "fields", "values", "defaults"}
_NAMESPACES = frozenset(Subject.Namespace.values)
_METHODS = frozenset(IndicationMethod.values)
_TRUE = {"true", "yes", "y", "1", "granted"}
_FALSE = {"false", "no", "n", "0", "refused", "denied"}


@dataclass(frozen=True)
class ImportMapping:
    name: str
    fields: dict[str, str | list[str]]
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    records: str | None = None
    each: str | None = None


def mapping_names() -> list[str]:
    """The mappings shipped in consent/imports/mappings/, by name."""
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.json"))


def mapping_load(name_or_path: str, *, paths: bool = True) -> ImportMapping:
    """A shipped mapping by name, or (with `paths`: the command, never the API) a mapping
    file by path."""
    path = MAPPINGS_DIR / f"{name_or_path}.json"
    if name_or_path not in mapping_names():
        path = Path(name_or_path)
        if not paths or not path.is_file():
            raise InvalidRequest(
                f"Unknown mapping {name_or_path!r}.",
                detail={"field": "mapping", "known": mapping_names()},
            )
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidRequest(f"The mapping {name_or_path!r} is not JSON.") from exc
    return mapping_parse(data, name=path.stem)


def mapping_parse(data: Any, *, name: str) -> ImportMapping:
    """A mapping from its JSON, or a 400 saying what is wrong with it."""

    def bad(why: str) -> InvalidRequest:
        return InvalidRequest(f"Mapping {name!r}: {why}", detail={"field": "mapping"})

    if not isinstance(data, dict):
        raise bad("expected a JSON object.")
    unknown = sorted(set(data) - _MAPPING_KEYS)
    if unknown:
        raise bad(f"unknown keys {unknown}.")
    fields = data.get("fields", {})
    values = data.get("values", {})
    defaults = data.get("defaults", {})
    if not isinstance(fields, dict) or not isinstance(values, dict):
        raise bad("fields and values must be objects.")
    if not isinstance(defaults, dict):
        raise bad("defaults must be an object.")
    for group in (fields, values, defaults):
        stray = sorted(set(group) - set(FIELDS))
        if stray:
            raise bad(f"{stray} are not import fields ({', '.join(FIELDS)}).")
    for key, where in fields.items():
        if not (isinstance(where, str) or (isinstance(where, list) and where)):
            raise bad(f"fields.{key} must be a column or path, or a list of them.")
    if any(not isinstance(v, dict) for v in values.values()):
        raise bad("each entry of values must be an object.")
    fmt = data.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise bad(f"format must be one of {', '.join(FORMATS)}.")
    return ImportMapping(
        name=name,
        fields=fields,
        values=values,
        defaults=defaults,
        format=fmt,
        records=data.get("records"),
        each=data.get("each"),
    )


@dataclass(frozen=True)
class Row:
    """One row of the file in our field names (None: a mapping left it out), where it was,
    and why it could not be read."""

    number: int
    values: dict[str, Any] | None
    item: int | None = None
    reasons: tuple[str, ...] = ()


def _path(record: Any, path: str, parent: Any) -> Any:
    if path.startswith("^"):
        return _path(parent, path[1:], None)
    if isinstance(record, Mapping) and path in record:
        return record[path]  # a column or key that holds dots itself
    value = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _mapped(
    record: Any, mapping: ImportMapping | None, parent: Any = None
) -> dict[str, Any] | None:
    if mapping is None:
        return {k: record.get(k) for k in FIELDS} if isinstance(record, Mapping) else {}
    out: dict[str, Any] = {}
    for key in FIELDS:
        where = mapping.fields.get(key, key)
        if isinstance(where, list):
            parts = [_path(record, w, parent) for w in where]
            value: Any = (
                None if any(p in (None, "") for p in parts) else ":".join(str(p) for p in parts)
            )
        else:
            value = _path(record, where, parent)
        translate = mapping.values.get(key)
        if translate is not None and value is not None and _key(value) in translate:
            value = translate[_key(value)]
            if value is None:
                return None  # the mapping leaves this row out
        if value in (None, "") and key in mapping.defaults:
            value = mapping.defaults[key]
        out[key] = value
    return out


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _records_of(document: Any, mapping: ImportMapping | None) -> list[Any]:
    if mapping is not None and mapping.records:
        found = _path(document, mapping.records, None)
    elif isinstance(document, Mapping) and "@graph" in document:
        found = document["@graph"]
    else:
        found = document
    if not isinstance(found, list):
        raise _unreadable("Expected a JSON list of records.")
    return found


def _unreadable(message: str) -> ImportInvalid:
    """A file that cannot be read as its format: a bad file like any other (no row named)."""
    return ImportInvalid(message, detail={"invalid_rows": 0, "rows": []})


def rows_read(body: IO[bytes], fmt: str, mapping: ImportMapping | None) -> Iterator[Row]:
    """Every row of the file, numbered: the line for jsonl and csv (the header is line 1),
    the record's place from 1 for json; `item` numbers the rows a mapping's `each` makes."""
    if fmt not in FORMATS:
        raise InvalidRequest(
            f"format must be one of {', '.join(FORMATS)}.", detail={"field": "format"}
        )
    if fmt == "csv":
        yield from _rows_csv(body, mapping)
        return
    if fmt == "jsonl":
        numbered = _lines_json(body)
    else:
        try:
            document = json.load(body)
        except ValueError as exc:
            raise _unreadable(f"The file is not JSON: {exc}.") from exc
        numbered = ((n, r, ()) for n, r in enumerate(_records_of(document, mapping), start=1))
    for number, record, reasons in numbered:
        if reasons:
            yield Row(number, {}, reasons=reasons)
        elif not isinstance(record, Mapping):
            yield Row(number, {}, reasons=("not a JSON object",))
        elif mapping is not None and mapping.each:
            items = _path(record, mapping.each, None)
            if not isinstance(items, list):
                yield Row(number, {}, reasons=(f"{mapping.each} is not a list",))
                continue
            for index, item in enumerate(items, start=1):
                if not isinstance(item, Mapping):
                    yield Row(number, {}, item=index, reasons=("not a JSON object",))
                else:
                    yield Row(number, _mapped(item, mapping, record), item=index)
        else:
            yield Row(number, _mapped(record, mapping))


def _lines_json(body: IO[bytes]) -> Iterator[tuple[int, Any, tuple[str, ...]]]:
    for number, raw in enumerate(body, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            yield number, json.loads(line), ()
        except ValueError:
            yield number, None, ("not JSON",)


def _rows_csv(body: IO[bytes], mapping: ImportMapping | None) -> Iterator[Row]:
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    try:
        for record in reader:
            yield Row(reader.line_num, _mapped(record, mapping))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _unreadable(f"The file is not CSV in UTF-8: {exc}.") from exc
    finally:
        text.detach()


# --- the check of one row -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One valid row, ready to apply."""

    row: int
    subject_id: str
    namespace: str
    purpose: str
    granted: bool
    effective_at: datetime
    external_id: str
    notice_version: int
    indication_method: str

    def as_list(self) -> list[Any]:
        return [
            self.row,
            self.subject_id,
            self.namespace,
            self.purpose,
            self.granted,
            self.effective_at.isoformat(),
            self.external_id,
            self.notice_version,
            self.indication_method,
        ]

    @classmethod
    def of_list(cls, values: list[Any]) -> ImportRecord:
        row, subject_id, namespace, purpose, granted, at, external_id, notice, method = values
        return cls(
            row,
            subject_id,
            namespace,
            purpose,
            granted,
            datetime.fromisoformat(at),
            external_id,
            notice,
            method,
        )


@dataclass(frozen=True)
class PurposeNotices:
    """What a row's purpose must satisfy: its published notice versions, oldest first."""

    key: str
    versions: list[tuple[int, datetime]]

    def version_at(self, at: datetime) -> int:
        """The version in force at `at`; the first one when none was published yet."""
        found = self.versions[0][0]
        for version, published_at in self.versions:
            if published_at <= at:
                found = version
        return found


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _instant(value: Any) -> datetime | None:
    """ISO 8601 (naive reads as UTC) or a Unix time in seconds."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def row_check(
    values: dict[str, Any], *, row: int, purposes: Mapping[str, PurposeNotices], now: datetime
) -> ImportRecord | list[str]:
    """The row as a record, or every reason it is not one."""
    reasons: list[str] = []
    missing = [k for k in REQUIRED if values.get(k) in (None, "")]
    if missing:
        reasons.append(f"missing {', '.join(missing)}")
    subject_id = values.get("subject_id")
    if "subject_id" not in missing and not identifier_ok(subject_id):
        reasons.append("subject_id must be a string of 1 to 255 characters, no control characters")
    namespace = values.get("namespace") or Subject.Namespace.ACCOUNT
    if namespace not in _NAMESPACES:
        reasons.append(f"namespace must be one of {', '.join(Subject.Namespace.values)}")
    key = values.get("purpose")
    purpose = purposes.get(key) if isinstance(key, str) else None
    if "purpose" not in missing and purpose is None:
        reasons.append(f"unknown or inactive purpose {values.get('purpose')!r}")
    granted = _boolean(values.get("granted"))
    if "granted" not in missing and granted is None:
        reasons.append("granted must be true or false")
    effective_at = _instant(values.get("effective_at"))
    if "effective_at" not in missing:
        if effective_at is None:
            reasons.append("effective_at must be an ISO 8601 timestamp")
        elif effective_at > now:
            reasons.append("effective_at is in the future")
    external = values.get("external_id")
    external_id = str(external) if isinstance(external, (str, int)) else None
    if "external_id" not in missing and not identifier_ok(external_id):
        reasons.append("external_id must be a string of 1 to 255 characters")
    method = values.get("indication_method") or IndicationMethod.IMPORT
    if method not in _METHODS:
        reasons.append(f"unknown indication_method {method!r}")
    elif granted and method not in AFFIRMATIVE_METHODS:
        reasons.append(f"a grant needs an affirmative indication, not {method!r}")
    notice_version = 0
    raw_version = values.get("notice_version")
    if purpose is not None:
        if not purpose.versions:
            reasons.append(f"purpose {purpose.key!r} has no published notice")
        elif raw_version in (None, ""):
            notice_version = purpose.version_at(effective_at or now)
        else:
            version = _integer(raw_version)
            if version is None or version not in {v for v, _ in purpose.versions}:
                reasons.append(f"purpose {purpose.key!r} has no notice version {raw_version!r}")
            else:
                notice_version = version
    if reasons:
        return reasons
    assert isinstance(subject_id, str) and purpose is not None and external_id is not None
    assert granted is not None and effective_at is not None
    return ImportRecord(
        row=row,
        subject_id=subject_id,
        namespace=namespace,
        purpose=purpose.key,
        granted=granted,
        effective_at=effective_at,
        external_id=external_id,
        notice_version=notice_version,
        indication_method=method,
    )
