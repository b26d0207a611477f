"""Production settings: key minimums, HTTPS by default, and a clean `check --deploy`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.test_deploy import PRODUCTION_SECRETS, ROOT, _import_settings


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        **PRODUCTION_SECRETS,
        "DJANGO_SETTINGS_MODULE": "governance.settings",
        "VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def _production_settings(tmp_path, **extra: str) -> dict:
    names = [
        "SECURE_SSL_REDIRECT",
        "SECURE_REDIRECT_EXEMPT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
        "SESSION_COOKIE_SECURE",
    ]
    code = (
        "import json, governance.settings as s;"
        f"print(json.dumps({{n: getattr(s, n, None) for n in {names!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_production_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_is_clean_behind_a_trusted_proxy(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(tmp_path, TRUSTED_PROXY_COUNT="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "s" * 49),
        ("SECRET_KEY", "ab" * 40),  # long, but only two distinct characters
        ("SUBJECT_HASH_KEY", "h" * 31),
        ("SUBJECT_ENCRYPTION_KEY", "dG9vLXNob3J0"),  # "too-short"
        ("SUBJECT_ENCRYPTION_OLD_KEYS", "not base64 at all!"),
    ],
)
def test_production_refuses_a_key_below_its_minimum(name, value):
    result = _import_settings({**PRODUCTION_SECRETS, name: value})
    assert result.returncode != 0
    assert name in result.stderr and "too weak" in result.stderr
    assert value not in result.stderr  # the error names the key, never its value


def test_short_keys_are_still_allowed_for_local_use():
    result = _import_settings({"DEBUG": "1", "SECRET_KEY": "s", "SUBJECT_HASH_KEY": "h"})
    assert result.returncode == 0, result.stderr


def test_production_defaults_redirect_to_https_and_send_hsts(tmp_path):
    values = _production_settings(tmp_path)
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    # No proxy declared: a client's X-Forwarded-Proto is not believed.
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_a_declared_proxy_is_believed_about_the_scheme(tmp_path):
    values = _production_settings(tmp_path, TRUSTED_PROXY_COUNT="1")
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    custom = _production_settings(
        tmp_path, TRUSTED_PROXY_COUNT="1", SECURE_PROXY_SSL_HEADER="X-Scheme: https"
    )
    assert custom["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_SCHEME", "https"]
    off = _production_settings(tmp_path, TRUSTED_PROXY_COUNT="1", SECURE_PROXY_SSL_HEADER="off")
    assert off["SECURE_PROXY_SSL_HEADER"] is None


def test_every_https_setting_can_be_turned_off_for_plain_http(tmp_path):
    values = _production_settings(tmp_path, SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0")
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 0
    debug = _production_settings(tmp_path, DEBUG="1")
    assert debug["SECURE_SSL_REDIRECT"] is False and debug["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.django_db
def test_health_endpoints_answer_over_http_while_everything_else_redirects():
    with override_settings(SECURE_SSL_REDIRECT=True):
        client = Client()  # its middleware is built now, with the redirect on
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        for path in ("/api/v1/purposes", "/admin/login/", "/healthz/x", "/.well-known/jwks.json"):
            response = client.get(path)
            assert response.status_code == 301, path
            assert response["Location"] == f"https://testserver{path}"
        https = client.get("/api/v1/purposes", secure=True)
        assert https.status_code != 301
        assert "max-age=" in https.headers["Strict-Transport-Security"]
