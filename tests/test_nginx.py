"""nginx in front of gunicorn (deploy/nginx/governance.conf), the shipped file itself.

The fast tests read the configuration and hold it to the service's own limits. The slow
ones run Debian's nginx (/usr/sbin/nginx, installed by `make test` with apt-get when
missing) with the shipped file in front of a real gunicorn: only the lines marked
"test:" are pointed at this run's ports and log files.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests import factories
from tests.live_gunicorn import free_port, gunicorn_server

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "deploy" / "nginx" / "governance.conf"
SHIPPED_TLS = ROOT / "deploy" / "nginx" / "tls.conf"
NGINX = os.environ.get("NGINX_BINARY") or "/usr/sbin/nginx"
STREAM = "/api/v1/checks/stream"
SLOW_CLIENTS = 32


# --- Reading the shipped configuration --------------------------------------------------


@dataclass
class Block:
    name: str
    args: list[str]
    directives: list[tuple[str, list[str]]]
    blocks: list[Block]

    def get(self, name: str) -> list[str] | None:
        found = [args for directive, args in self.directives if directive == name]
        assert len(found) <= 1, f"{name} set twice in {self.name} {self.args}"
        return found[0] if found else None

    def all(self, name: str) -> list[list[str]]:
        return [args for directive, args in self.directives if directive == name]


_TOKEN = re.compile(
    r"""\s*(?:#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"']+))"""
)


def parse(text: str) -> Block:
    """nginx's syntax, enough for this file: directives, blocks, quoted strings, comments."""
    root = Block("main", [], [], [])
    stack = [root]
    words: list[str] = []
    for match in _TOKEN.finditer(text):
        dq, sq, punct, word = match.groups()
        if punct == "{":
            block = Block(words[0], words[1:], [], [])
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif punct == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        elif punct == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        elif dq is not None or sq is not None or word is not None:
            words.append(next(w for w in (dq, sq, word) if w is not None))
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    value = value.lower()
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def seconds(value: str) -> int:
    return int(value[:-1]) * {"s": 1, "m": 60}[value[-1]] if value[-1] in "sm" else int(value)


def shipped_server() -> Block:
    (server,) = [b for b in parse(SHIPPED.read_text()).blocks if b.name == "server"]
    return server


def locations(server: Block) -> dict[str, Block]:
    return {" ".join(b.args): b for b in server.blocks if b.name == "location"}


def body_limited_routes() -> dict[str, int]:
    """Every plain route whose view declares its own body limit: path -> bytes."""
    found: dict[str, int] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None) or getattr(
                    pattern.callback, "view_class", None
                )
                limit = getattr(view, "max_body_bytes", None)
                if limit:
                    route = str(pattern.pattern)
                    assert "<" not in route and "(" not in route, f"{route}: not a plain path"
                    found["/" + prefix + route] = int(limit)

    walk(get_resolver().url_patterns, "")
    return found


def test_every_body_limit_of_the_service_has_its_nginx_location():
    server = shipped_server()
    by_location = locations(server)
    # Ordinary JSON bodies (and admin forms): the server-wide default.
    assert size(server.get("client_max_body_size")[0]) == settings.CONSENT_MAX_BODY_BYTES
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.CONSENT_MAX_BODY_BYTES
    routes = body_limited_routes()
    assert routes["/api/v1/checks"] == 128 * 1024 * 1024  # the bulk check is among them
    for path, limit in routes.items():
        location = by_location.get(f"= {path}")
        assert location is not None, f"no `location = {path}` for its {limit}-byte limit"
        assert size(location.get("client_max_body_size")[0]) == limit, path


def test_every_buffered_location_keeps_its_whole_body_in_memory():
    server = shipped_server()
    assert server.get("client_body_buffer_size") == server.get("client_max_body_size")
    for where, location in locations(server).items():
        if where == "= /metrics":
            continue  # never passed on: test_metrics_are_denied_from_outside
        assert location.get("proxy_pass") == ["http://governance_web"], where
        buffered = location.get("proxy_request_buffering") != ["off"]
        if location.get("client_max_body_size") and buffered:
            assert location.get("client_body_buffer_size") == location.get(
                "client_max_body_size"
            ), where
    # Answers too large for the buffers go on as they come rather than to a temp file.
    assert server.get("proxy_max_temp_file_size") == ["0"]
    assert all(loc.get("proxy_max_temp_file_size") is None for loc in locations(server).values())


def test_the_streamed_check_is_unbuffered_both_ways_and_unlimited_like_the_service():
    stream = locations(shipped_server())[f"= {STREAM}"]
    assert stream.get("proxy_request_buffering") == ["off"]
    assert stream.get("proxy_buffering") == ["off"]
    assert stream.get("client_max_body_size") == ["0"]  # the service reads it in bounded memory
    assert shipped_server().get("proxy_http_version") == ["1.1"]  # chunked upstream needs 1.1


def test_slow_clients_meet_short_timeouts_and_the_service_sees_the_real_peer():
    server = shipped_server()
    assert seconds(server.get("client_header_timeout")[0]) <= 10
    assert seconds(server.get("client_body_timeout")[0]) <= 30
    assert seconds(server.get("send_timeout")[0]) <= 60
    assert seconds(server.get("keepalive_timeout")[0]) <= 30
    headers = {args[0].lower(): args[1] for args in server.all("proxy_set_header")}
    # With TRUSTED_PROXY_COUNT=1 the service takes the right-most entry: nginx's peer.
    assert headers["x-forwarded-for"] in {"$proxy_add_x_forwarded_for", "$remote_addr"}
    assert headers["x-forwarded-proto"] == "$scheme"
    assert headers["host"] in {"$http_host", "$host"}


def test_metrics_are_denied_from_outside():
    metrics = locations(shipped_server())["= /metrics"]
    assert metrics.get("deny") == ["all"]
    assert metrics.get("proxy_pass") is None


def test_the_service_gets_nginx_request_id_and_the_access_log_shows_it():
    headers = {args[0].lower(): args[1] for args in shipped_server().all("proxy_set_header")}
    assert headers["x-request-id"] == "$request_id"
    (log_format,) = re.findall(r"log_format\s+governance\s+(.*?);", SHIPPED.read_text(), re.S)
    assert "$request_id" in log_format


def test_the_access_log_format_writes_no_raw_request_uri():
    text = SHIPPED.read_text()
    (log_format,) = re.findall(r"log_format\s+governance\s+(.*?);", text, re.S)
    assert "$governance_log_path" in log_format
    for raw in ("$request ", '$request"', "$request_uri", "$uri", "$args", "$http_referer"):
        assert raw not in log_format, raw
    access_logs = shipped_server().all("access_log")
    assert access_logs and all(args[1] == "governance" for args in access_logs)


# --- Debian's nginx in front of a real gunicorn -----------------------------------------


def require_nginx() -> None:
    if not Path(NGINX).is_file():
        pytest.fail(
            f"These tests need Debian's nginx ({NGINX} is missing). Install it with "
            "`make nginx` (apt-get install -y nginx).",
            pytrace=False,
        )


def retarget(text: str, name: str, value: str) -> str:
    """Replaces the first argument of the directive on the line marked `# test: name`."""
    pattern = re.compile(rf"^(\s*\S+\s+)[^\s;]+([^\n]*# test: {name})$", re.M)
    new, count = pattern.subn(lambda m: m.group(1) + value + m.group(2), text)
    assert count == 1, f"the shipped config has no single line marked `# test: {name}`"
    return new


@dataclass
class Stack:
    base: str
    port: int
    access_log: Path
    error_log: Path
    gunicorn_log: Path
    upstream: str = ""  # gunicorn's own address, behind nginx
    tls_port: int = 0
    certificate: Path | None = None


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as docker-compose.tls.yml's TLS_CERT_DIR."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(pem))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "fullchain.pem", directory / "privkey.pem"


def start_nginx(directory: Path, upstream: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """nginx with the shipped file and, included from it as in docker-compose.tls.yml, the
    shipped tls.conf: (process, http port, https port)."""
    port, tls_port = free_port(), free_port()
    shipped = SHIPPED.read_text()
    shipped = retarget(shipped, "upstream", upstream)
    shipped = retarget(shipped, "listen", f"127.0.0.1:{port}")
    shipped = retarget(shipped, "access_log", str(directory / "access.log"))
    shipped = retarget(shipped, "error_log", str(directory / "error.log"))
    shipped = retarget(shipped, "tls", str(directory / "tls" / "*.conf"))
    (directory / "governance.conf").write_text(shipped)
    (directory / "tls").mkdir()
    fullchain, privkey = self_signed_certificate(directory)
    tls = retarget(SHIPPED_TLS.read_text(), "tls_listen", f"127.0.0.1:{tls_port}")
    tls = retarget(tls, "tls_certificate", str(fullchain))
    tls = retarget(tls, "tls_certificate_key", str(privkey))
    (directory / "tls" / "tls.conf").write_text(tls)
    # The parts a distribution's nginx.conf supplies, all inside this directory.
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"""daemon off;
master_process on;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "main-error.log"} info;
events {{ worker_connections 256; }}
http {{
{temp_paths}
    access_log {directory / "main-access.log"};
    include {directory / "governance.conf"};
}}
"""
    )
    log = (directory / "nginx.out").open("wb")
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, port, tls_port


def wait_for(predicate: Any, what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    require_nginx()
    directory = tmp_path_factory.mktemp("nginx")
    gunicorn_log = directory / "gunicorn-access.log"
    args = [
        "--access-logfile",
        str(gunicorn_log),
        "--access-logformat",
        '"%(r)s" %(s)s xff="%({x-forwarded-for}i)s" proto=%({x-forwarded-proto}i)s',
    ]
    with (
        django_db_blocker.unblock(),
        gunicorn_server(threads=2, args=args, env={"TRUSTED_PROXY_COUNT": "1"}) as upstream,
    ):
        nginx, port, tls_port = start_nginx(directory, upstream.removeprefix("http://"))
        base = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                if nginx.poll() is not None:
                    raise RuntimeError((directory / "nginx.out").read_text())
                return requests.get(f"{base}/healthz", timeout=5).status_code == 200

            wait_for(up, "nginx to answer /healthz")
            yield Stack(
                base,
                port,
                directory / "access.log",
                directory / "error.log",
                gunicorn_log,
                upstream=upstream,
                tls_port=tls_port,
                certificate=directory / "fullchain.pem",
            )
        finally:
            nginx.terminate()
            try:
                nginx.wait(timeout=20)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()


def _logged(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _seen_by_gunicorn(stack: Stack, marker: str) -> None:
    """Sends `marker` through nginx and waits for gunicorn to log it: every request sent
    before it has been logged by then, or never reached gunicorn."""
    requests.get(f"{stack.base}/healthz?{marker}", timeout=10).raise_for_status()
    wait_for(lambda: marker in _logged(stack.gunicorn_log), f"{marker} in gunicorn's log")


def _closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_slow_header_clients_are_held_by_nginx_and_never_reach_gunicorn(stack):
    slow = []
    try:
        for i in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
            sock.sendall(f"GET /healthz?slowloris-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            slow.append(sock)
        # With all 32 still sending their headers, the service answers through nginx.
        wait_for(
            lambda: requests.get(f"{stack.base}/healthz", timeout=5).status_code == 200,
            "/healthz through nginx while 32 clients trickle headers",
        )
        open_ = list(slow)

        def trickle() -> bool:
            # One more header line from every slow client still connected, as a slowloris
            # does; nginx's header timeout counts the whole header, so it drops them all.
            for sock in list(open_):
                try:
                    sock.sendall(b"X-Still-Typing: 1\r\n")
                    gone = _closed(sock)
                except OSError:
                    gone = True
                if gone:
                    open_.remove(sock)
            if open_:
                time.sleep(1)
            return not open_

        wait_for(trickle, "nginx to drop every slow-header client")
    finally:
        for sock in slow:
            sock.close()
    _seen_by_gunicorn(stack, f"after-slowloris-{uuid.uuid4().hex}")
    assert "slowloris-" not in _logged(stack.gunicorn_log).replace("after-slowloris-", "")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_nginx_logs_no_subject_identifier(stack):
    secret = uuid.uuid4().hex
    paths = [
        f"/api/v1/subjects/plain-{secret}/consents",
        f"/api/v1/subjects/{quote(f'it/s-{secret}', safe='')}/history",
        f"/api/v1/subjects/quote'{secret}/checks/analytics?as_of=2024-01-01T00:00:00Z",
        f"/api/v1/subjects/a/consents/{secret}/decisions",
        f"/api/v1/subjects/{secret}",
        f"/api/v1/checks/stream?purpose=analytics&subject_id={secret}",
        f"/admin/consent/consentevent/?q={secret}",
    ]
    for path in paths:
        requests.get(f"{stack.base}{path}", timeout=10)
    # Django routes on the decoded path: percent-encoding must not hide /subjects/ either
    # (sent as is: requests would decode the %73 itself).
    raw = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    raw.request("GET", f"/api/v1/%73ubjects/encoded-{secret}/withdrawals")
    assert raw.getresponse().status == 401
    raw.close()
    # An oversized body nginx refuses itself: its error line would quote the request line.
    refused = requests.post(
        f"{stack.base}/api/v1/subjects/big-{secret}/withdrawals",
        data=b"x" * (settings.CONSENT_MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert refused.status_code == 413
    marker = f"last-{uuid.uuid4().hex}"
    requests.get(f"{stack.base}/healthz?purpose={marker}", timeout=10)
    wait_for(lambda: marker in _logged(stack.access_log), "nginx's access log")
    logged = _logged(stack.access_log)
    assert secret not in logged
    assert secret not in _logged(stack.error_log)
    assert "/api/v1/subjects/<redacted>/consents" in logged
    assert "/api/v1/subjects/<redacted>/history" in logged
    assert "/api/v1/subjects/<redacted>/checks/analytics?as_of=" in logged
    assert "/admin/consent/consentevent/?<redacted>" in logged


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_nginx_refuses_bodies_over_each_limit_itself(stack):
    marker = uuid.uuid4().hex
    over = requests.post(
        f"{stack.base}/api/v1/consents?purpose={marker}",
        data=b"{" + b" " * settings.CONSENT_MAX_BODY_BYTES + b"}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert over.status_code == 413
    assert "nginx" in over.text  # nginx's own page, not the service's JSON error
    banner = requests.post(
        f"{stack.base}/api/v1/banner/consents?purpose={marker}",
        data=b"{" + b" " * 64 * 1024 + b"}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert banner.status_code == 413
    # The bulk check's larger limit lets the same body through to the service (401: no key).
    bulk = requests.post(
        f"{stack.base}/api/v1/checks?purpose={marker}",
        data=b"{" + b" " * settings.CONSENT_MAX_BODY_BYTES + b"}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert bulk.status_code == 401, bulk.text
    _seen_by_gunicorn(stack, f"after-{marker}")
    seen = [line for line in _logged(stack.gunicorn_log).splitlines() if marker in line]
    assert len(seen) == 2 and "/api/v1/checks?" in seen[0], seen  # the 413 never got there


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_tls_conf_serves_https_and_the_service_learns_the_scheme(stack):
    """docker-compose.tls.yml's way: tls.conf included from the shipped server."""
    marker = f"tls-{uuid.uuid4().hex}"
    answer = requests.get(
        f"https://127.0.0.1:{stack.tls_port}/healthz?{marker}",
        verify=str(stack.certificate),
        headers={"X-Forwarded-Proto": "http"},  # a client's claim, replaced by nginx
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    wait_for(lambda: marker in _logged(stack.gunicorn_log), "gunicorn's log")
    (line,) = [line for line in _logged(stack.gunicorn_log).splitlines() if marker in line]
    assert line.endswith("proto=https"), line


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_service_sees_the_peer_nginx_appends_to_x_forwarded_for(stack):
    marker = f"xff-{uuid.uuid4().hex}"
    requests.get(
        f"{stack.base}/healthz?{marker}", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    )
    wait_for(lambda: marker in _logged(stack.gunicorn_log), "gunicorn's log")
    (line,) = [line for line in _logged(stack.gunicorn_log).splitlines() if marker in line]
    # TRUSTED_PROXY_COUNT=1 takes the right-most entry: the address nginx saw, not the
    # client's claim.
    assert 'xff="203.0.113.9, 127.0.0.1"' in line


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_checks_larger_than_the_ordinary_limit_pass_through_nginx(stack):
    factories.seed_purposes()
    factories.record("user-0", analytics=True)
    _, key = factories.api_client(scopes=["checks"])
    auth = {"Authorization": f"Bearer {key}"}
    many = 60_000  # ~1.7 MB of NDJSON, ~1.3 MB of JSON: both over the 1 MiB default
    body = "".join(f'{{"subject_id": "user-{i}"}}\n' for i in range(many)).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    # Chunked, so nginx passes it on as it comes (HTTP/1.1 to gunicorn), not whole.
    streamed = requests.post(
        f"{stack.base}{STREAM}?purpose=analytics",
        data=chunks(),
        headers={**auth, "Content-Type": "application/x-ndjson"},
        timeout=300,
    )
    assert streamed.status_code == 200, streamed.text[:500]
    lines = streamed.text.splitlines()
    assert len(lines) == many + 1
    assert json.loads(lines[-1])["summary"]["allowed"] == 1

    bulk = requests.post(
        f"{stack.base}/api/v1/checks",
        json={"purpose": "analytics", "subject_ids": [f"user-{i}" for i in range(many)]},
        headers=auth,
        timeout=300,
    )
    assert bulk.status_code == 200, bulk.text[:500]
    assert bulk.json()["allowed"] == ["user-0"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_metrics_through_nginx_are_refused_and_requests_carry_nginx_id(stack):
    for path in ("/metrics", "//metrics", "/%6detrics", "/metrics?format=x"):
        raw = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        raw.request("GET", path)
        response = raw.getresponse()
        body = response.read()
        raw.close()
        assert response.status == 403, path
        assert b"governance_" not in body, path
    # Gunicorn's port itself answers a scraper on loopback.
    scraped = requests.get(f"{stack.upstream}/metrics", timeout=10)
    assert "governance_http_requests_total" in scraped.text
    marker = f"rid-{uuid.uuid4().hex}"
    answered = requests.get(
        f"{stack.base}/healthz?purpose={marker}",
        headers={"X-Request-ID": "client-chosen-id"},
        timeout=10,
    )
    request_id = answered.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's, not the client's
    wait_for(lambda: marker in _logged(stack.access_log), "nginx's access log")
    (line,) = [line for line in _logged(stack.access_log).splitlines() if marker in line]
    assert line.endswith(f"rid={request_id}")
