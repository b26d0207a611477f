"""Test settings: the real thing, pointed at PostgreSQL and Redis on loopback.

Only defaults are set here; the environment still wins, so CI or a developer can point the
suite elsewhere.
"""

import os

os.environ.setdefault("DEBUG", "0")
# Long enough for the minimums production enforces (DEBUG is off here too).
os.environ.setdefault(
    "SECRET_KEY", "test-secret-key-not-for-production-long-enough-for-the-deploy-check"
)
os.environ.setdefault("SUBJECT_HASH_KEY", "test-subject-hash-key-not-for-production")
os.environ.setdefault("SUBJECT_ENCRYPTION_KEY", "dGVzdC1zdWJqZWN0LWVuY3J5cHRpb24ta2V5LTMyYnk")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/governance")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECURE_COOKIES", "0")
# The test client and the live servers speak plain http.
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The tests' webhook receivers listen on loopback, on whatever port is free.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1")
os.environ.setdefault("WEBHOOK_ALLOWED_PORTS", "1024-65535")
# Retention's external-table tests: a second real PostgreSQL database beside the default one.
os.environ.setdefault("RETENTION_EXTERNAL_DATABASES", "features")
os.environ.setdefault(
    "EXTERNAL_DATABASE_URL_FEATURES", os.environ["DATABASE_URL"].split("?")[0] + "_external"
)
os.environ.setdefault(
    "RETENTION_EXTERNAL_TABLES",
    '[{"alias": "features", "table": "ml_features", "timestamp_column": "created_at",'
    ' "subject_key_column": "subject_key", "purpose": "ml_training", "keep_days": 180}]',
)

from governance.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
