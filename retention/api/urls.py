from django.urls import path

from retention.api import views

urlpatterns = [
    path("retention/policies", views.PolicyListApi.as_view(), name="retention-policies"),
    path(
        "retention/policies/<int:policy_id>",
        views.PolicyDetailApi.as_view(),
        name="retention-policy",
    ),
    path("retention/runs", views.RunCreateApi.as_view(), name="retention-runs"),
    path("retention/runs/<str:run_id>", views.RunDetailApi.as_view(), name="retention-run"),
    path("erasure-requests", views.ErasureRequestApi.as_view(), name="erasure-requests"),
    path(
        "erasure-requests/<str:request_id>",
        views.ErasureDetailApi.as_view(),
        name="erasure-request",
    ),
    path("access-requests", views.AccessRequestApi.as_view(), name="access-requests"),
    path(
        "access-requests/<str:request_id>", views.AccessDetailApi.as_view(), name="access-request"
    ),
]
