from django.urls import path, re_path

from consent.api import lean, views
from consent.banner import api as banner_views
from consent.banner.limits import banner_rate_limit_allows
from consent.checks import api as checks_api
from consent.decisions import api as decisions_api
from consent.imports import api as imports_api
from consent.reports import api as reports_api
from consent.restriction import api as restriction_api
from consent.snapshots import api as snapshots_api
from governance.api.hot import lean as hot_path

# Subject identifiers are opaque and may hold any character, "/" included once decoded.
SUBJECT = r"subjects/(?P<subject_id>(?s:.+))"

urlpatterns = [
    path("purposes", views.PurposeListApi.as_view(), name="purposes"),
    # The hottest endpoints (the write, the single check, a subject's consents and the
    # banner's configuration) take the lean path first (governance/api/hot.py), served by
    # their twins in consent/api/lean.py.
    path(
        "consents",
        hot_path(views.ConsentRecordApi, "POST", lean.consent_record_lean),
        name="consents",
    ),
    re_path(
        rf"^{SUBJECT}/consents$",
        hot_path(views.SubjectConsentsApi, "GET", lean.subject_consents_lean),
        name="subject-consents",
    ),
    re_path(rf"^{SUBJECT}/history$", views.SubjectHistoryApi.as_view(), name="subject-history"),
    re_path(
        rf"^{SUBJECT}/withdrawals$", views.SubjectWithdrawApi.as_view(), name="subject-withdrawals"
    ),
    re_path(
        rf"^{SUBJECT}/identifier$", views.SubjectIdentifierApi.as_view(), name="subject-identifier"
    ),
    # Restriction of processing, Art. 18 (scope `rights`).
    re_path(
        rf"^{SUBJECT}/restriction$",
        restriction_api.SubjectRestrictionApi.as_view(),
        name="subject-restriction",
    ),
    re_path(
        rf"^{SUBJECT}/records$", imports_api.SubjectRecordsApi.as_view(), name="subject-records"
    ),
    path("receipts/<str:receipt_id>", views.ReceiptDetailApi.as_view(), name="receipt-detail"),
    # Checks, data uses and decisions (scope `checks`).
    path("checks", checks_api.ChecksApi.as_view(), name="checks"),
    path("checks/stream", checks_api.ChecksStreamApi.as_view(), name="checks-stream"),
    re_path(
        rf"^{SUBJECT}/checks/(?P<purpose>[^/]+)$",
        hot_path(checks_api.SubjectCheckApi, "GET", lean.subject_check_lean),
        name="subject-check",
    ),
    re_path(
        rf"^{SUBJECT}/decisions$",
        decisions_api.SubjectDecisionsApi.as_view(),
        name="subject-decisions",
    ),
    path("data-uses", decisions_api.DataUseListApi.as_view(), name="data-uses"),
    path("data-uses/export", decisions_api.DataUseExportApi.as_view(), name="data-uses-export"),
    path(
        "decisions/<str:decision_id>",
        decisions_api.DecisionDetailApi.as_view(),
        name="decision-detail",
    ),
    path(
        "decisions/<str:decision_id>/card",
        decisions_api.DecisionCardApi.as_view(),
        name="decision-card",
    ),
    path(
        "decisions/<str:decision_id>/drift",
        decisions_api.DecisionDriftApi.as_view(),
        name="decision-drift",
    ),
    # Lakehouse snapshots (scope `checks`; docs/lakehouse.md).
    path("snapshots", snapshots_api.SnapshotCreateApi.as_view(), name="snapshots"),
    path(
        "snapshots/<str:snapshot_id>",
        snapshots_api.SnapshotDetailApi.as_view(),
        name="snapshot-detail",
    ),
    path(
        "snapshots/<str:snapshot_id>/file",
        snapshots_api.SnapshotFileApi.as_view(),
        name="snapshot-file",
    ),
    path(
        "snapshots/<str:snapshot_id>/usage",
        snapshots_api.SnapshotUsageApi.as_view(),
        name="snapshot-usage",
    ),
    # Imports (scope `admin`; docs/imports.md).
    path("imports", imports_api.ImportCreateApi.as_view(), name="imports"),
    path("imports/<str:import_id>", imports_api.ImportDetailApi.as_view(), name="import-detail"),
    path(
        "banner/config",
        hot_path(
            banner_views.BannerConfigApi,
            "GET",
            lean.banner_config_lean,
            first=banner_rate_limit_allows,
        ),
        name="banner-config",
    ),
    path(
        "reports/consent-rates",
        reports_api.ConsentRatesApi.as_view(),
        name="reports-consent-rates",
    ),
    path(
        "reports/consent-skew",
        reports_api.ConsentSkewApi.as_view(),
        name="reports-consent-skew",
    ),
    path("banner/consents", banner_views.BannerConsentApi.as_view(), name="banner-consents"),
    path("banner/link", banner_views.BannerLinkApi.as_view(), name="banner-link"),
    path("subject-tokens", banner_views.SubjectTokenApi.as_view(), name="subject-tokens"),
]
