"""GET /api/v1/reports/consent-rates (scope `admin`): the view parses and serializes; the
counting and the small-count suppression are consent.reports.selectors'."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.checks.api import SkewSerializer
from consent.checks.inputs import as_of_parse
from consent.errors import UnknownPurpose
from consent.models import Purpose
from consent.reports import selectors
from consent.reports.selectors import Window
from governance.api.common import InstantText, Text, iso, json_response, validated
from governance.api.schema import (
    OptionalSuppressedCountField,
    SuppressedCountField,
    error_responses,
)
from governance.errors import InvalidRequest
from governance.models import Scope

_SKEW_NAME = "(" + "|".join(selectors.SKEW_GROUPINGS) + ")"
# `by` of the skew report: names of SKEW_GROUPINGS, comma-separated, spaces around them allowed.
SKEW_BY = RegexValidator(
    re.compile(rf"^ *{_SKEW_NAME} *(, *{_SKEW_NAME} *)*\Z"),
    "by names fields of " + ", ".join(selectors.SKEW_GROUPINGS) + ", comma-separated.",
)


@extend_schema_serializer(component_name="ConsentRateBucket")
class BucketSerializer(serializers.Serializer):
    bucket = serializers.CharField(allow_null=True)
    suppressed = serializers.BooleanField()
    granted = SuppressedCountField()
    refused = SuppressedCountField()
    withdrawn = SuppressedCountField()
    gpc = SuppressedCountField()
    grant_rate = serializers.FloatField(allow_null=True)
    shown = OptionalSuppressedCountField(allow_null=True)


class ConsentRatesApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        purpose = Text(max_length=64, help_text="A purpose key.")
        from_ = serializers.DateField(
            required=False, help_text="The first day (UTC); default 29 days before `to`."
        )
        to = serializers.DateField(
            required=False, help_text="The last day (UTC), included; default today."
        )
        by = serializers.ChoiceField(choices=selectors.GROUPINGS, required=False, default="day")

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = fields.pop("from_")  # a Python keyword, so renamed here
            return fields

    @extend_schema_serializer(component_name="ConsentRates")
    class OutputSerializer(serializers.Serializer):
        purpose = serializers.CharField()
        by = serializers.CharField()
        buckets = BucketSerializer(many=True)

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = serializers.DateField()
            fields["to"] = serializers.DateField()
            return fields

    @extend_schema(
        operation_id="reports_consent_rates",
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **error_responses(400)},
    )
    def get(self, request: Request) -> Response:
        """Consent rates of one purpose over whole UTC days (the last 30 by default), by day,
        week, property, jurisdiction or source: granted, refused, withdrawn and GPC counts,
        the grant rate and, where the banner reports them, how often it was shown. Counts
        under the small-count threshold read "<10" and the bucket says `suppressed`."""
        data = validated(self.InputSerializer, request.query_params.dict())
        purpose = Purpose.objects.filter(key=data["purpose"]).first()
        if purpose is None:
            raise UnknownPurpose(detail={"purpose": data["purpose"]})
        window = _window(data.get("from"), data.get("to"))
        buckets = selectors.consent_rates(purpose=purpose, window=window, by=data["by"])
        body = {
            "purpose": purpose.key,
            "from": window.start,
            "to": window.end,
            "by": data["by"],
            "buckets": buckets,
        }
        return Response(self.OutputSerializer(body).data)


class ConsentSkewApi(APIView):
    required_scope = Scope.ADMIN

    class InputSerializer(serializers.Serializer):
        purpose = Text(max_length=64, help_text="A purpose key.")
        as_of = InstantText(required=False, help_text="An instant, not in the future; default now.")
        by = Text(
            required=False,
            default=",".join(selectors.SKEW_GROUPINGS),
            validators=[SKEW_BY],
            help_text="Comma-separated, of: "
            + ", ".join(selectors.SKEW_GROUPINGS)
            + " (default: all).",
        )

    @extend_schema(
        operation_id="reports_consent_skew",
        parameters=[InputSerializer],
        responses={
            200: inline_serializer(
                "ConsentSkewReport",
                {
                    "purpose": serializers.CharField(),
                    "as_of": serializers.DateTimeField(),
                    "by": serializers.ListField(child=serializers.CharField()),
                    "skew": SkewSerializer,
                },
            ),
            **error_responses(400),
        },
        description="Who the service's own consent leaves out: the account-namespace people "
        "asked about the purpose, allowed or not at `as_of` by the decision rule, grouped "
        "by their standing event's context. The consent-skew report of checks with "
        "attributes (docs/consent-bias.md), suppressed the same way.",
    )
    def get(self, request: Request) -> HttpResponse:
        data = validated(self.InputSerializer, request.query_params.dict())
        purpose = Purpose.objects.filter(key=data["purpose"]).first()
        if purpose is None:
            raise UnknownPurpose(detail={"purpose": data["purpose"]})
        names = list(dict.fromkeys(n.strip() for n in data["by"].split(",")))
        at = as_of_parse(data.get("as_of")) or timezone.now()
        report = selectors.consent_skew(purpose=purpose, at=at, by=names)
        return json_response(
            {"purpose": purpose.key, "as_of": iso(at), "by": names, "skew": report}
        )


def _window(start: Any, end: Any) -> Window:
    """The days asked for: by default the last 30 (ending `to`, or today)."""
    if start is None:
        try:
            window = Window.last_days(end=end)
        except OverflowError:  # 30 days before 0001-01-01 and the like
            raise InvalidRequest("to is out of range.", detail={"field": "to"}) from None
    else:
        window = Window(start=start, end=end or Window.last_days().end)
    if window.start > window.end:
        raise InvalidRequest("from must not be after to.", detail={"field": "from"})
    return window
