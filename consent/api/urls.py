from django.urls import path, re_path

from consent.api import banner_views, views

# Subject identifiers are opaque and may hold any character, "/" included once decoded.
SUBJECT = r"subjects/(?P<subject_id>(?s:.+))"

urlpatterns = [
    path("purposes", views.PurposeListApi.as_view(), name="purposes"),
    path("consents", views.ConsentRecordApi.as_view(), name="consents"),
    re_path(rf"^{SUBJECT}/consents$", views.SubjectConsentsApi.as_view(), name="subject-consents"),
    re_path(rf"^{SUBJECT}/history$", views.SubjectHistoryApi.as_view(), name="subject-history"),
    re_path(
        rf"^{SUBJECT}/withdrawals$", views.SubjectWithdrawApi.as_view(), name="subject-withdrawals"
    ),
    path("receipts/<str:receipt_id>", views.ReceiptDetailApi.as_view(), name="receipt-detail"),
    path("banner/config", banner_views.BannerConfigApi.as_view(), name="banner-config"),
    path("banner/consents", banner_views.BannerConsentApi.as_view(), name="banner-consents"),
    path("banner/link", banner_views.BannerLinkApi.as_view(), name="banner-link"),
    path("subject-tokens", banner_views.SubjectTokenApi.as_view(), name="subject-tokens"),
]
