"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

from django.conf import settings

from governance.http import ChunkedBodyMiddleware

application = ChunkedBodyMiddleware(
    get_wsgi_application(),
    limit=settings.CHUNKED_BODY_LIMIT_BYTES,
    passthrough=("/api/v1/checks/stream",),
)
