"""Schemathesis over the generated OpenAPI schema, with every check it has.

The schema is generated from the code, so every endpoint added later is fuzzed too. The
suite runs the coverage phase (each boundary of each field: missing, empty, too long,
wrong type, out of the enum, ...), the schema's examples and a short fuzzing phase with a
fixed seed; `make fuzz` runs the fuzzing phase longer (FUZZ_EXAMPLES, FUZZ_SEED).

A disagreement between the server and its schema fails the test unless it is a domain
rule no schema can express: those are listed once, in ALLOWED, each with its reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from governance.wsgi import application
from tests import factories

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "16"))


@dataclass(frozen=True)
class Allowed:
    """A check that may fail for one operation when the server answers with this error
    code (and, if given, a message starting so), for a rule the schema cannot state."""

    operation: str  # "POST /api/v1/consents", as schemathesis labels it
    check: str  # a schemathesis check: positive_data_acceptance, negative_data_rejection, ...
    code: str
    reason: str
    message: str = ""


def _rejected(operations: str, code: str, reason: str, message: str = "") -> list[Allowed]:
    return [
        Allowed(op.strip(), "positive_data_acceptance", code, reason, message)
        for op in operations.split(",")
    ]


_PURPOSES = "purposes exist in the database, not in the schema: a string of the right shape "
_NOW = "an instant after the server's clock cannot be known when the schema is written"

# Every disagreement the suite accepts, with its reason. Add a line here, never a skip.
ALLOWED: tuple[Allowed, ...] = (
    *_rejected(
        "POST /api/v1/consents, POST /api/v1/checks, POST /api/v1/checks/stream, "
        "GET /api/v1/subjects/{subject_id}/checks/{purpose}, POST /api/v1/data-uses, "
        "POST /api/v1/snapshots, POST /api/v1/subjects/{subject_id}/withdrawals, "
        "POST /api/v1/retention/policies, PATCH /api/v1/retention/policies/{policy_id}, "
        "POST /api/v1/banner/consents, GET /api/v1/reports/consent-rates, "
        "GET /api/v1/reports/consent-skew",
        "unknown_purpose",
        _PURPOSES + "naming none is a 400, never a denial (DESIGN: the decision rule)",
    ),
    *_rejected(
        "POST /api/v1/checks, POST /api/v1/checks/stream, POST /api/v1/snapshots",
        "unknown_data_use",
        "data uses are registered at run time (POST /api/v1/data-uses)",
    ),
    *_rejected(
        "POST /api/v1/consents, POST /api/v1/banner/consents",
        "duplicate_purpose",
        "one decision per purpose: uniqueItems compares whole objects, not their `purpose`",
    ),
    *_rejected(
        "POST /api/v1/retention/policies, PATCH /api/v1/retention/policies/{policy_id}",
        "unknown_target",
        "retention targets are registered by the deployment (models, external tables, lakes)",
    ),
    *_rejected(
        "POST /api/v1/retention/policies, PATCH /api/v1/retention/policies/{policy_id}",
        "invalid_duration",
        "keep_for is an ISO 8601 duration above the target's floor; no pattern says positive",
    ),
    *_rejected(
        "POST /api/v1/snapshots",
        "invalid_request",
        "exactly one of purpose and data_use: a oneOf the serializer cannot declare",
        message="Name a purpose or a data use",
    ),
    *_rejected(
        "POST /api/v1/checks, POST /api/v1/checks/stream, POST /api/v1/snapshots, "
        "GET /api/v1/subjects/{subject_id}/checks/{purpose}, GET /api/v1/reports/consent-skew",
        "invalid_request",
        "as_of must not be in the future: " + _NOW,
        message="as_of must not be in the future",
    ),
    *_rejected(
        "GET /api/v1/reports/consent-rates",
        "invalid_request",
        "a window runs forwards: `from` after `to` (or after today, when `to` is left out) "
        "compares two parameters, which no schema can",
        message="from must not be after to",
    ),
    *_rejected(
        "GET /api/v1/reports/consent-rates",
        "invalid_request",
        "without `from` the window is the 30 days ending `to`: a `to` in year 1's first "
        "month would start before the first representable day",
        message="to is out of range",
    ),
    *_rejected(
        "GET /api/v1/subjects/{subject_id}/history",
        "invalid_request",
        "a cursor is opaque: only one handed out by the previous page is valid",
        message="Malformed cursor",
    ),
    *_rejected(
        "POST /api/v1/webhooks",
        "invalid_request",
        "webhook URLs must be http(s) to an allowed port and a public address (SSRF rules "
        "configured per deployment)",
        message="Webhook URL",
    ),
    *_rejected(
        "POST /api/v1/imports",
        "import_invalid",
        "whether an uploaded file holds valid consent records (rows, purposes, notice versions, "
        "a mapping that leaves something) is the import's own whole-file check, not a schema",
    ),
    *_rejected(
        "POST /api/v1/imports",
        "invalid_request",
        "the file's format comes from ?format= or else the Content-Type: OpenAPI cannot say "
        "that one of a query parameter and a media type must be given",
        message="Name the format",
    ),
)


def _error(response: Any) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    return error.get("code"), str(error.get("message", ""))


def excused_checks(operation: str, response: Any) -> list[Any]:
    code, message = _error(response)
    names = {
        allowed.check
        for allowed in ALLOWED
        if allowed.operation == operation
        and allowed.code == code
        and message.startswith(allowed.message)
    }
    return CHECKS.get_by_names(sorted(names))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def auth(db) -> dict[str, str]:
    _, key = factories.api_client(
        scopes=["consent:write", "consent:read", "checks", "rights", "admin"]
    )
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api_schema(db, auth, settings):
    # The banner's per-address limit would answer the fuzzer 429 before it reads anything.
    settings.BANNER_RATE_LIMIT_PER_MINUTE = 1_000_000
    # As Django's test client does: the WSGI app must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    factories.seed_purposes()
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": auth,
            "generation": {"max-examples": EXAMPLES, "deterministic": False},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=config)
    yield loaded
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


load_all_checks()


@schema.parametrize()
def test_api_keeps_its_contract(case, auth):
    response = case.call()
    # The key named again, so that ignored_auth knows it is real and probes the same request
    # without it and with a wrong one.
    excused = excused_checks(case.operation.label, response)
    case.validate_response(response, headers=auth, excluded_checks=excused)


def test_every_allowance_names_a_check_and_gives_a_reason():
    for allowed in ALLOWED:
        assert allowed.check in CHECKS.get_all_names(), allowed
        method, path = allowed.operation.split(" ", 1)
        assert method in {"GET", "POST", "PATCH", "PUT", "DELETE"} and path.startswith("/"), allowed
        assert len(allowed.reason) > 20, allowed
