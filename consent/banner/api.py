"""The banner's API (publishable keys), subject tokens (secret keys), /banner.js and GPC.

Every banner view is rate-limited per client IP before anything else, then checks that the
key is bound to an active property and that the request comes from one of its origins.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import selectors
from consent.api.common import client_context, decision_inputs
from consent.api.serializers import ContextSerializer, DecisionSerializer, SubjectIdField
from consent.banner import selectors as banner_selectors
from consent.banner import services as banner_services
from consent.banner.limits import banner_rate_limit_wait
from consent.identity import subject_key
from consent.models import IndicationMethod, Property, Subject
from consent.reports.services import banner_shown_count
from consent.subject_tokens import subject_token_mint, subject_token_verify
from governance.api.common import actor_of, api_client_of, iso, validated
from governance.api.schema import IDEMPOTENCY_KEY, error_responses
from governance.http import safe_methods_only
from governance.idempotency import Answer, fingerprint, run_idempotent
from governance.models import Scope


def _optional_header(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name=name,
        location=OpenApiParameter.HEADER,
        required=False,
        type=str,
        description=description,
    )


DEVICE_HEADER = _optional_header(
    "X-Device-Id", "The device id the service issued earlier (kept in the site's storage)."
)
TOKEN_HEADER = _optional_header(
    "X-Subject-Token", "A subject token minted by the site's back end for a logged-in person."
)
GPC_HEADER = _optional_header("Sec-GPC", "Global Privacy Control; only the exact value 1 counts.")


def _origin(request: HttpRequest) -> str:
    # As origin_check compares it with the property's origins, which it has passed.
    return (request.headers.get("Origin") or "").strip().lower().rstrip("/")


def gpc_signal(request: HttpRequest) -> bool:
    """GPC counts only when the header's value is exactly "1"; anything else is absence."""
    return request.headers.get("Sec-GPC") == "1"


class BannerApi(APIView):
    """Base of the banner endpoints: publishable keys only, from the property's origins."""

    allow_publishable = True
    publishable_only = True
    property: Property

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Counted before authentication, so floods with bad keys are limited too.
        wait = banner_rate_limit_wait(request)
        if wait is not None:
            raise exceptions.Throttled(wait=wait)
        super().initial(request, *args, **kwargs)
        self.property = banner_selectors.property_for_client(api_client_of(request))
        banner_selectors.origin_check(prop=self.property, origin=request.headers.get("Origin"))

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Answers are about one person's device: never kept by a shared cache.
        response["Cache-Control"] = "private, no-store"
        return response


def _subject_of(
    request: Request, *, device_id: str | None, token: str | None
) -> tuple[str | None, str | None]:
    """(subject_id from the token, verified device id); either may be None."""
    subject_id = subject_token_verify(token) if token else None
    device = banner_services.device_id_verify(device_id) if device_id else None
    return subject_id, device


class BannerConfigApi(BannerApi):
    """The property's purposes and texts in a language, and whether to ask this person."""

    @extend_schema_serializer(component_name="BannerPurpose")
    class PurposeSerializer(serializers.Serializer):
        key = serializers.CharField()
        name = serializers.CharField()
        legal_basis = serializers.CharField()
        gpc_opt_out = serializers.BooleanField()
        notice_version = serializers.IntegerField()
        title = serializers.CharField()
        description = serializers.CharField()
        language = serializers.CharField()
        status = serializers.CharField(allow_null=True)
        status_source = serializers.CharField(allow_null=True)

    @extend_schema_serializer(component_name="BannerConfig")
    class OutputSerializer(serializers.Serializer):
        property = serializers.CharField()
        language = serializers.CharField()
        texts = serializers.DictField(child=serializers.CharField())
        purposes = serializers.ListField(child=serializers.DictField())
        ask = serializers.BooleanField()
        reasons = serializers.ListField(child=serializers.DictField())
        gpc = serializers.BooleanField()
        gpc_pending = serializers.BooleanField()
        device_id = serializers.CharField(allow_null=True)
        subject = serializers.CharField()

    @extend_schema(
        operation_id="banner_config",
        parameters=[
            OpenApiParameter("lang", str, required=False, description="e.g. fr or fr-CA"),
            DEVICE_HEADER,
            TOKEN_HEADER,
            GPC_HEADER,
        ],
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request) -> Response:
        return Response(banner_config_body(request, self.property))


def banner_config_body(request: Any, prop: Property) -> dict[str, Any]:
    """The answer of GET /banner/config for a request its property's checks have passed
    (a device id issued when it names no one). Shared by the DRF view and its lean twin
    (consent.api.lean), so both answer alike; raises the same domain errors."""
    language = banner_selectors.language_resolve(prop=prop, requested=request.GET.get("lang"))
    subject_id, device_id = _subject_of(
        request,
        device_id=request.headers.get("X-Device-Id"),
        token=request.headers.get("X-Subject-Token"),
    )
    if subject_id is not None:
        subject = selectors.subject_find(identifier=subject_id)
        kind = Subject.Namespace.ACCOUNT
    elif device_id is None:  # a first visit: the id issued now names no one yet
        device_id, subject = banner_services.device_id_new(), None
        kind = Subject.Namespace.DEVICE
    else:
        subject = selectors.subject_find(identifier=device_id, namespace=Subject.Namespace.DEVICE)
        kind = Subject.Namespace.DEVICE
    config = banner_selectors.banner_config(
        prop=prop, language=language, subject=subject, gpc=gpc_signal(request)
    )
    if config["ask"]:
        banner_shown_count(property_id=prop.pk)
    return {**config, "device_id": device_id, "subject": kind}


class BannerConsentApi(BannerApi):
    """Records a banner choice for the device or the subject token's person; honours GPC."""

    max_body_bytes = 64 * 1024

    @extend_schema_serializer(component_name="BannerConsentsRequest")
    class InputSerializer(serializers.Serializer):
        device_id = serializers.CharField(max_length=128, required=False, allow_null=True)
        subject_token = serializers.CharField(max_length=2048, required=False, allow_null=True)
        decisions = DecisionSerializer(many=True, allow_empty=True, max_length=100)  # type: ignore[call-arg]
        indication_method = serializers.ChoiceField(
            choices=[IndicationMethod.BUTTON, IndicationMethod.CHECKBOX],
            required=False,
            default=IndicationMethod.BUTTON,
        )
        context = ContextSerializer(required=False)  # type: ignore[assignment]

    @extend_schema_serializer(component_name="BannerEvent")
    class EventSerializer(serializers.Serializer):
        event_id = serializers.UUIDField(source="id")
        purpose = serializers.CharField(source="purpose.key")
        action = serializers.CharField()
        source = serializers.CharField()  # type: ignore[assignment]
        notice_version = serializers.IntegerField()
        expires_at = serializers.DateTimeField(allow_null=True)
        receipt_id = serializers.UUIDField()

    @extend_schema_serializer(component_name="BannerConsents")
    class OutputSerializer(serializers.Serializer):
        device_id = serializers.CharField(allow_null=True)
        subject = serializers.CharField(source="subject_namespace")
        recorded_at = serializers.DateTimeField()
        receipt_ids = serializers.ListField(child=serializers.UUIDField())
        events = serializers.ListField(child=serializers.DictField())
        carried = serializers.ListField(child=serializers.CharField())
        gpc = serializers.BooleanField()

    @extend_schema(
        operation_id="banner_consents_record",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY, GPC_HEADER],
        responses={201: OutputSerializer, **error_responses(400, 404, 409, 413, 415, 422)},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        subject_id, device_id = _subject_of(
            request, device_id=data.get("device_id"), token=data.get("subject_token")
        )
        gpc = gpc_signal(request)
        prop = self.property
        context = client_context(request, data.get("context"))

        def produce() -> Answer:
            result = banner_services.banner_consent_record(
                prop=prop,
                decisions=decision_inputs(data["decisions"]),
                actor=actor_of(request),
                device_id=device_id,
                subject_id=subject_id,
                indication_method=data["indication_method"],
                gpc=gpc,
                context=context,
            )
            body = {
                "device_id": result.device_id,
                "subject": result.subject_namespace,
                "recorded_at": iso(result.recorded_at),
                "receipt_ids": [str(r) for r in result.receipt_ids],
                "events": self.EventSerializer(result.events, many=True).data,
                "carried": result.carried,
                "gpc": gpc,
            }
            return Answer(status.HTTP_201_CREATED, body)

        def redact(body: dict[str, Any]) -> dict[str, Any]:
            # Nothing of the device at rest: a replay's device is the request's own (below).
            body.pop("device_id", None)
            return body

        def restore(body: dict[str, Any]) -> dict[str, Any]:
            return {**body, "device_id": device_id}

        # Every visitor of a property sends the same publishable key, so its Idempotency-Key
        # is only unique per browser: scoped by the person (token), the device and the
        # origin. A request naming neither a device nor a person has no scope that would
        # keep one new visitor from replaying another's answer (and device id), so it is
        # never replayed: the banner script sends the device id /banner/config issued.
        named = subject_key(subject_id) if subject_id is not None else None
        device_key = subject_key(device_id) if device_id is not None else None
        key = request.headers.get("Idempotency-Key")
        answer = run_idempotent(
            client=api_client_of(request),
            key=key if (named or device_key) else None,
            request_hash=fingerprint(request.path, {"body": request.data, "gpc": gpc}),
            produce=produce,
            redact=redact,
            restore=restore,
            subject_key=named or device_key,
            scope=("banner", _origin(request), named or "", device_key or ""),
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return Response(answer.body, status=answer.status, headers=headers)


class BannerLinkApi(BannerApi):
    """Carries the device's earlier choices over to the subject of a token."""

    @extend_schema_serializer(component_name="BannerLinkRequest")
    class InputSerializer(serializers.Serializer):
        device_id = serializers.CharField(max_length=128)
        subject_token = serializers.CharField(max_length=2048)

    @extend_schema(
        operation_id="banner_link",
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "BannerLink",
                {
                    "linked": serializers.BooleanField(),
                    "carried": serializers.ListField(child=serializers.CharField()),
                    "receipt_id": serializers.UUIDField(allow_null=True),
                },
            ),
            **error_responses(400, 404),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        subject_id, device_id = _subject_of(
            request, device_id=data["device_id"], token=data["subject_token"]
        )
        assert subject_id is not None and device_id is not None
        link = banner_services.subject_link(
            device_id=device_id,
            subject_id=subject_id,
            actor=actor_of(request),
            prop=self.property,
            context=client_context(request, None),
        )
        return Response(
            {
                "linked": link is not None,
                "carried": link.carried if link else [],
                "receipt_id": str(link.receipt_id) if link and link.receipt_id else None,
            }
        )


class SubjectTokenApi(APIView):
    """Mints a short-lived subject token for a logged-in person (secret key)."""

    required_scope = Scope.CONSENT_WRITE

    @extend_schema_serializer(component_name="SubjectTokenRequest")
    class InputSerializer(serializers.Serializer):
        subject_id = SubjectIdField()

    @extend_schema_serializer(component_name="SubjectToken")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="subject_tokens_mint",
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        token, expires_at = subject_token_mint(subject_id=data["subject_id"])
        return Response(
            self.OutputSerializer({"token": token, "expires_at": expires_at}).data,
            status=status.HTTP_201_CREATED,
        )


# --- plain Django views: the script and the GPC well-known file ----------------------------

_BANNER_JS = Path(__file__).resolve().parent.parent / "static" / "consent" / "banner.js"


@lru_cache(maxsize=1)
def _banner_source(mtime: float) -> bytes:
    return _BANNER_JS.read_bytes()


@safe_methods_only
def banner_js(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        _banner_source(_BANNER_JS.stat().st_mtime),
        content_type="application/javascript; charset=utf-8",
    )
    response["Cache-Control"] = "public, max-age=300"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@safe_methods_only
def gpc_json(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"gpc": True, "lastUpdate": settings.GPC_LAST_UPDATE})
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=86400"
    return response
