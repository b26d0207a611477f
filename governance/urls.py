"""The one composition root: every app's URLs are mounted here."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from consent.banner.api import banner_js, gpc_json
from consent.decisions.api import dataset_card_context
from consent.decisions.card import CONTEXT_PATH
from governance.api.views import HealthzApi, JwksApi, ReadyzApi
from governance.api.webhooks import WebhookCreateApi
from governance.http import api_not_found

handler400 = "governance.errors.handler400"
handler403 = "governance.errors.handler403"
handler404 = "governance.errors.handler404"
handler500 = "governance.errors.handler500"

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False), name="root"),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path(".well-known/jwks.json", JwksApi.as_view(), name="jwks"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("consent.api.urls")),
    path("api/v1/webhooks", WebhookCreateApi.as_view(), name="webhooks"),
    path("banner.js", banner_js, name="banner-js"),
    path(".well-known/gpc.json", gpc_json, name="gpc-json"),
    path(CONTEXT_PATH.lstrip("/"), dataset_card_context, name="dataset-card-context"),
    path("api/v1/", include("retention.api.urls")),
]

# Keep last: anything else under /api/ answers in the error shape, DEBUG or not.
urlpatterns += [re_path(r"^api/", api_not_found)]
