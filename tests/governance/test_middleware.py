"""The admin's session, authentication and message middleware skip the bearer-key API
(governance/middleware.py): API answers keep every security and CORS header, and the admin
keeps its sessions, users and messages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def test_api_answers_keep_security_headers_and_touch_no_session(api):
    client = Client()
    client.cookies["sessionid"] = "x"  # a stray, invalid session cookie
    response = client.get(
        "/api/v1/subjects/u-1/consents", headers={"Authorization": f"Bearer {api.key}"}
    )
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "origin" in response["Vary"].lower() and "cookie" not in response["Vary"].lower()
    assert "sessionid" not in response.cookies
    assert not hasattr(response.wsgi_request, "session")


def test_the_admin_keeps_sessions_users_and_messages(staff_client):
    user = get_user_model().objects.create_superuser("staff", "s@example.com", "pw-long-enough-1")
    client = staff_client(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert response.wsgi_request.user == user
    assert hasattr(response.wsgi_request, "_messages")
