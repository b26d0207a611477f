"""New secrets made in the admin appear once, in the response body, never in a cookie."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import Client, RequestFactory

from governance import services, webhooks
from governance.keys import hash_key
from governance.models import ApiClient, ApiKey, WebhookSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_client) -> Client:
    return staff_client(User.objects.create_superuser("dpo", "dpo@example.com", "pw"))


def _stored_messages(client: Client) -> list[str]:
    """Every message the browser would carry: the messages cookie decoded, and the session."""
    texts: list[str] = []
    cookie = client.cookies.get(CookieStorage.cookie_name)
    if cookie is not None and cookie.value:
        # Django's own decoder (signature checked); the stubs do not list it.
        storage = CookieStorage(RequestFactory().get("/"))
        decoded = storage._decode(cookie.value)  # type: ignore[attr-defined]
        texts += [str(m) for m in decoded or []]
    texts += [str(m) for m in client.session.get("_messages", [])]
    return texts


def _shown(response) -> list[str]:
    return re.findall(r'<code class="secret-shown-once">([^<]*)</code>', response.content.decode())


def _assert_shown_once_and_never_stored(client: Client, response, secret: str) -> None:
    for morsel in response.cookies.values():
        assert secret not in morsel.value
    assert not any(secret in text for text in _stored_messages(client))
    assert response.status_code == 200
    assert response.content.decode().count(secret) == 1
    assert "no-store" in response.headers["Cache-Control"]
    # Nothing queued for the next page either.
    later = client.get("/admin/")
    assert secret not in later.content.decode()


def test_api_key_made_in_the_admin_is_shown_in_the_body_and_not_in_the_messages_cookie(
    staff, purposes
):
    response = staff.post(
        "/admin/governance/apiclient/add/",
        {
            "name": "pipeline",
            "kind": "secret",
            "scopes": ["checks"],
            "rate_limit_per_minute": "",
            "active": "on",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    (secret,) = _shown(response)
    assert ApiKey.objects.get(client__name="pipeline").key_hash == hash_key(secret)
    _assert_shown_once_and_never_stored(staff, response, secret)


def test_key_issued_by_the_admin_action_is_shown_in_the_body_and_not_in_the_messages_cookie(
    staff, purposes
):
    client, first = services.api_client_create(name="pipeline", scopes=["checks"])
    response = staff.post(
        "/admin/governance/apiclient/",
        {"action": "issue_new_key", "_selected_action": [client.pk]},
    )
    (secret,) = _shown(response)
    assert secret != first
    assert client.keys.filter(key_hash=hash_key(secret)).exists()
    _assert_shown_once_and_never_stored(staff, response, secret)


def test_webhook_secret_made_in_the_admin_is_shown_in_the_body_and_not_in_the_messages_cookie(
    staff,
):
    response = staff.post(
        "/admin/governance/webhooksubscription/add/",
        {
            "name": "crm",
            "url": "https://crm.example.com/hook",
            "event_types": ["consent.withdrawn"],
            "active": "on",
        },
    )
    sub = WebhookSubscription.objects.get()
    secret = webhooks.secret_decrypt(sub.secret_encrypted, subscription_id=sub.pk)
    _assert_shown_once_and_never_stored(staff, response, secret)
    assert _shown(response) == [secret]


def test_secret_page_links_on_to_the_new_object(staff, purposes):
    response = staff.post(
        "/admin/governance/apiclient/add/",
        {
            "name": "pipeline",
            "kind": "secret",
            "scopes": ["checks"],
            "active": "on",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    client = ApiClient.objects.get(name="pipeline")
    assert f"/admin/governance/apiclient/{client.pk}/change/" in response.content.decode()
