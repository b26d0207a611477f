"""Plain Django views that answer in the API's error shape (for URLs outside DRF)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from governance.errors import error_body


def safe_methods_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET and HEAD only; anything else is a 405 in the error shape (never a CSRF page)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse(
                error_body("method_not_allowed", f"Method {request.method} not allowed."),
                status=405,
            )
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    wrapper.csrf_exempt = True  # type: ignore[attr-defined]
    return wrapper


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Catch-all under /api/: JSON even when DEBUG would show Django's HTML page, and for
    every method (a POST would otherwise meet the CSRF check's HTML 403 first)."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


class ChunkedBodyMiddleware:
    """WSGI middleware: gives Django a Content-Length for chunked request bodies.

    Django reads a body only up to CONTENT_LENGTH, so a chunked upload (no length) would
    read as empty. Gunicorn decodes chunked input and says so with wsgi.input_terminated;
    the body is buffered here up to `limit` + 1 bytes, so an oversized one still meets the
    parser's 413. Paths in `passthrough` (streaming endpoints) read the input themselves.
    """

    def __init__(self, app: Any, *, limit: int, passthrough: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.passthrough = passthrough

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if (
            chunked
            and not environ.get("CONTENT_LENGTH")
            and environ.get("wsgi.input_terminated")
            and not environ.get("PATH_INFO", "").startswith(self.passthrough)
        ):
            import io

            body = environ["wsgi.input"].read(self.limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
