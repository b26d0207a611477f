"""Operator endpoints: liveness and readiness."""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import signing
from governance.celery import app as celery_app

logger = logging.getLogger(__name__)


class HealthzApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="healthz",
        responses={200: inline_serializer("Health", {"status": serializers.CharField()})},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return Response({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    probe = f"readyz:{uuid.uuid4().hex}"
    cache.set(probe, "1", timeout=5)
    if cache.get(probe) != "1":
        raise RuntimeError("cache did not return what was stored")
    cache.delete(probe)


def _check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


class ReadyzApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="readyz",
        responses={
            200: inline_serializer(
                "Ready",
                {"status": serializers.CharField(), "checks": serializers.DictField()},
            ),
            503: inline_serializer(
                "NotReady",
                {
                    "status": serializers.CharField(),
                    "down": serializers.ListField(child=serializers.CharField()),
                    "checks": serializers.DictField(),
                },
            ),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response:
        """Readiness: the database, the cache and the broker answer; a 503 names those down."""
        checks: dict[str, str] = {}
        for name, check in (
            ("database", _check_database),
            ("cache", _check_cache),
            ("broker", _check_broker),
        ):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # a readiness probe reports any failure, by name
                logger.warning("readiness check %s failed: %s", name, exc)
                checks[name] = f"down: {type(exc).__name__}"
        down = [name for name, result in checks.items() if result != "ok"]
        if down:
            return Response({"status": "unavailable", "down": down, "checks": checks}, status=503)
        return Response({"status": "ok", "checks": checks})


class JwksApi(APIView):
    """The public keys that verify signed receipts (RFC 7517), retired ones included."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="jwks",
        responses={200: inline_serializer("Jwks", {"keys": serializers.ListField()})},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response(signing.jwks(), headers={"Cache-Control": "public, max-age=300"})
