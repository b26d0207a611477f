"""Webhook subscriptions over the API (scope `admin`): the secret is in the answer once."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import services
from governance.api.common import Instant, Text, actor_of, validated
from governance.api.schema import error_responses
from governance.models import Scope
from governance.net import client_ip
from governance.outbox import EVENT_TYPES


class WebhookCreateApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        url = Text(max_length=2000)
        event_types = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, max_length=20
        )
        name = Text(max_length=120, required=False, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        url = serializers.CharField()
        event_types = serializers.ListField(child=serializers.CharField())
        active = serializers.BooleanField()
        created_at = Instant()
        secret = serializers.CharField(help_text="Signing secret; shown in this answer only.")

    @extend_schema(
        operation_id="webhooks_create",
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """Subscribes a URL to outbox events; the signing secret is shown in this answer only."""
        data = validated(self.InputSerializer, request.data)
        subscription, secret = services.webhook_subscription_create(
            url=data["url"],
            event_types=data.get("event_types", []),
            name=data.get("name", ""),
            actor=actor_of(request),
            ip=client_ip(request),
        )
        body = self.OutputSerializer(
            {
                "id": subscription.id,
                "name": subscription.name,
                "url": subscription.url,
                "event_types": subscription.event_types,
                "active": subscription.active,
                "created_at": subscription.created_at,
                "secret": secret,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)
