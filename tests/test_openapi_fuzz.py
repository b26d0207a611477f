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
    """A check that may fail for one operation when the server answers with this error code
    (None: whatever the answer), because of a rule the schema cannot state."""

    operation: str  # "POST /api/v1/consents", as schemathesis labels it
    check: str  # a schemathesis check's name: positive_data_acceptance, ...
    code: str | None
    reason: str


ALLOWED: tuple[Allowed, ...] = ()


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def excused_checks(operation: str, response: Any) -> list[Any]:
    code = _error_code(response)
    names = {
        allowed.check
        for allowed in ALLOWED
        if allowed.operation == operation and allowed.code in (None, code)
    }
    return CHECKS.get_by_names(sorted(names))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_schema(db):
    # As Django's test client does: the WSGI app must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    factories.seed_purposes()
    _, key = factories.api_client(
        scopes=["consent:write", "consent:read", "checks", "rights", "admin"]
    )
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {key}"},
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
def test_api_keeps_its_contract(case):
    response = case.call()
    case.validate_response(
        response, excluded_checks=excused_checks(case.operation.label, response)
    )


def test_every_allowance_names_a_check_and_gives_a_reason():
    for allowed in ALLOWED:
        assert allowed.check in CHECKS.get_all_names(), allowed
        assert allowed.operation.split(" ", 1)[0] in {"GET", "POST", "PATCH", "PUT", "DELETE"}
        assert len(allowed.reason) > 20, allowed
