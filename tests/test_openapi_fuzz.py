"""Schemathesis over the generated OpenAPI: no 5xx, no response that breaks its own schema.

Every endpoint added later is fuzzed too, since the schema is generated from the code.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from governance.wsgi import application
from tests import factories

pytestmark = pytest.mark.django_db

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
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    loaded.config.headers = {"Authorization": f"Bearer {key}"}
    yield loaded
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_answers_within_its_own_schema(case):
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
