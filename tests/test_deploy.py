"""The production shape (docker-compose.yml) and the settings contract, checked without Docker.

Docker cannot run here, so the compose file is validated structurally: every service the
design names, health checks, dependencies that exist, commands that point at real code, and
every variable it needs documented in docs/configuration.md, the one settings table.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_a_health_check():
    services = compose()["services"]
    assert {"nginx", "web", "worker", "beat", "postgres", "redis"} <= set(services)
    for name in ("nginx", "web", "worker", "beat", "postgres", "redis"):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert services[name].get("image") or services[name].get("build"), name


# What each image that compose runs but does not build brings, from its official
# Dockerfile: nginx's Debian image installs curl beside nginx; postgres and redis ship their
# clients. The shell's own commands count for every image.
SHELL_BUILTINS = {"exit", "test", "true", "false", "["}
IMAGE_TOOLS = {
    "nginx": {"nginx", "curl"},
    "postgres": {"pg_isready", "psql"},
    "redis": {"redis-cli", "redis-server"},
    "python": {"python", "python3", "pip"},
}


@dataclass
class Image:
    tools: set[str]
    writable: list[str]  # directories the image's user may write


def dockerfile_image() -> Image:
    """What the Dockerfile's image can run and write: its base image's tools, what its RUN
    lines install (apt-get, pip, and `uv sync`: the project's dependencies' commands) and
    the directories it hands to its user."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line.strip() and line[0] != "#"
    ]
    (base,) = [rest for op, rest in instructions if op == "FROM"]
    tools = set(IMAGE_TOOLS[base.split(":")[0]])
    chowned: list[str] = []
    for op, rest in instructions:
        if op != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = command.split()
            flagless = [w for w in words if not w.startswith("-")]
            if words[:2] in (["apt-get", "install"], ["pip", "install"]):
                tools.update(flagless[2:])
            elif words[:2] == ["uv", "sync"]:
                assert "--no-dev" in words  # the dev group's commands are not there
                tools.update(project_commands())
            elif words[:1] == ["chown"]:
                chowned += flagless[2:]
    return Image(tools, chowned)


def project_commands() -> set[str]:
    """The console scripts of the project's (not the dev group's) dependencies."""
    from importlib.metadata import distribution

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    commands = set()
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=!~;\s]", requirement)[0]
        entry_points = distribution(name).entry_points
        commands |= {e.name for e in entry_points if e.group == "console_scripts"}
    return commands


def healthcheck_commands(test: list[str]) -> list[str]:
    """The programs a healthcheck's `test` runs."""
    if test[0] == "CMD":
        return [test[1]]
    assert test[0] == "CMD-SHELL", test
    return [part.split()[0] for part in re.split(r"\|\||&&|;|\|", test[1]) if part.strip()]


# A file a health check reads must be one the service writes: variable -> (what writes it,
# the service setting that makes it so).
HEARTBEAT_WRITERS = {
    "BEAT_HEARTBEAT_FILE": (
        ["celery", "-A", "governance", "beat"],
        "governance.beat:HeartbeatScheduler",
    )
}


def test_every_health_check_runs_what_its_image_has_and_reads_what_is_written():
    from django.conf import settings

    services = compose()["services"]
    built = dockerfile_image()
    assert {"python", "celery", "gunicorn", "uv"} <= built.tools
    for name, service in services.items():
        test = service["healthcheck"]["test"] if "healthcheck" in service else None
        if not test:
            continue
        if service.get("build"):
            tools, writable = built.tools, built.writable
        else:
            tools, writable = IMAGE_TOOLS[service["image"].split(":")[0]], []
        for program in healthcheck_commands(test):
            assert program in tools | SHELL_BUILTINS, f"{name}'s health check runs {program}"
        # Every absolute path the check names (not a URL, not /dev/null) is a file the
        # service writes.
        for path in re.findall(r"(?<![\w:/])(/[\w.-]+(?:/[\w.-]+)+)", " ".join(test[1:])):
            if path.startswith("/dev/"):
                continue
            environment = service.get("environment") or {}
            writers = [var for var in HEARTBEAT_WRITERS if environment.get(var) == path]
            assert writers, f"{name}'s health check reads {path}, which nothing writes"
            command, scheduler = HEARTBEAT_WRITERS[writers[0]]
            assert service["command"][: len(command)] == command, name
            assert scheduler == settings.CELERY_BEAT_SCHEDULER
            assert any(path.startswith(d.rstrip("/") + "/") for d in writable), (
                f"{path} is not in a directory the image's user may write: {writable}"
            )


def test_the_tls_override_mounts_what_the_shipped_server_includes():
    base = compose()["services"]["nginx"]
    tls = yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text())["services"]["nginx"]
    assert set(tls) <= {"ports", "volumes"}, "the override only adds to nginx"
    assert tls["ports"] == ["${TLS_PORT:-443}:443"]
    (included,) = re.findall(
        r"^\s*include\s+(\S+)/\*\.conf;", (ROOT / "deploy/nginx/governance.conf").read_text(), re.M
    )
    tls_conf = (ROOT / "deploy/nginx/tls.conf").read_text()
    certificates = re.findall(r"^ssl_certificate(?:_key)?\s+(\S+);", tls_conf, re.M)
    assert {Path(c).name for c in certificates} == {"fullchain.pem", "privkey.pem"}
    mounts = {m.rsplit(":", 2)[1]: m.split(":", 1)[0] for m in tls["volumes"]}
    assert mounts[f"{included}/tls.conf"] == "./deploy/nginx/tls.conf"
    assert all(str(Path(c).parent) in mounts for c in certificates)
    assert re.search(r"^listen 443 ssl;", tls_conf, re.M)
    assert not set(mounts) & {m.rsplit(":", 2)[1] for m in base["volumes"]}


def test_an_empty_compose_default_leaves_the_service_default():
    """`${NAME:-}` passes an empty value, which the settings read as their own default."""
    text = (ROOT / "docker-compose.yml").read_text()
    empty = set(re.findall(r"\$\{([A-Z_]+):-\}", text))
    assert {"CORS_ALLOWED_ORIGINS", "WEBHOOK_MAX_ATTEMPTS", "CONTROLLER_URL"} <= empty
    dump = (
        "import json, governance.settings as s; print(json.dumps({k: repr(getattr(s, k)) "
        "for k in dir(s) if k.isupper()}))"
    )

    def settings_with(extra: dict[str, str]) -> dict[str, str]:
        result = subprocess.run(
            [sys.executable, "-c", dump],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", ""), **PRODUCTION_SECRETS, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    unset, blank = settings_with({}), settings_with(dict.fromkeys(empty, ""))
    changed = {k: (unset[k], blank[k]) for k in unset if unset[k] != blank[k]}
    assert not changed, f"an empty value changes these settings: {changed}"


def test_compose_dependencies_exist_and_wait_for_health():
    services = compose()["services"]
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec["condition"] in {"service_healthy", "service_completed_successfully"}


def test_compose_commands_point_at_real_code():
    services = compose()["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "governance.wsgi:application" in dockerfile
    module, _, attr = "governance.wsgi:application".partition(":")
    assert hasattr(importlib.import_module(module), attr)
    assert services["worker"]["command"][:3] == ["celery", "-A", "governance"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "governance", "beat"]
    assert services["migrate"]["command"][:2] == ["python", "manage.py"]
    for script in (ROOT / "deploy" / "postgres-init").iterdir():
        assert os.access(script, os.X_OK), f"{script} must be executable"


def test_compose_runs_the_app_as_a_role_other_than_the_migrating_owner():
    services = compose()["services"]
    app_url = services["web"]["environment"]["DATABASE_URL"]
    owner_url = services["migrate"]["environment"]["DATABASE_URL"]
    assert "governance_app" in app_url and "governance_owner" in owner_url


def _default(value: str) -> str:
    """A compose value's default: `${NAME:-default}` -> `default`, a plain value as is."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_only_nginx_faces_clients_and_web_trusts_exactly_it():
    services = compose()["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx"}, f"only nginx may publish a port, not {published - {'nginx'}}"
    assert all(str(port).endswith(":80") for port in services["nginx"]["ports"])
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    mounts = services["nginx"]["volumes"]
    assert "./deploy/nginx/governance.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    assert (ROOT / "deploy" / "nginx" / "governance.conf").is_file()
    # governance/net.py: with one trusted proxy the client is X-Forwarded-For's last entry,
    # the peer nginx appends; with none it would be nginx's own address for every client.
    assert _default(str(services["web"]["environment"]["TRUSTED_PROXY_COUNT"])) == "1"
    upstreams = re.findall(
        r"^\s*server\s+(\S+);", (ROOT / "deploy/nginx/governance.conf").read_text(), re.M
    )
    assert upstreams == ["web:8000"]


CONFIGURATION = ROOT / "docs" / "configuration.md"


def documented_settings() -> dict[str, str]:
    """The settings table of docs/configuration.md: variable -> its default cell.

    Only rows of the one table count (a name merely mentioned in prose does not), and each
    row names one variable and gives its default.
    """
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = re.fullmatch(r"\| `([A-Z][A-Z0-9_<>]*)` \| ([^|]+) \|.*\|", line.strip())
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_the_settings_table_gives_every_variable_a_default():
    rows = documented_settings()
    assert len(rows) > 50, "docs/configuration.md lost its settings table"
    assert all(rows.values()), [name for name, default in rows.items() if not default]


def test_every_variable_compose_needs_is_documented():
    text = "".join(path.read_text() for path in ROOT.glob("docker-compose*.yml"))
    needed = set(re.findall(r"\$\{([A-Z_]+)", text))
    undocumented = sorted(needed - set(documented_settings()))
    assert not undocumented, f"document these in docs/configuration.md: {undocumented}"


def test_every_setting_read_from_the_environment_is_documented():
    settings_text = (ROOT / "governance" / "settings.py").read_text()
    names = set(
        re.findall(r'env_(?:str|bool|int|float|list|days|ports)\(\s*"([A-Z_]+)"', settings_text)
    )
    names |= set(
        re.findall(
            r'"(SECRET_KEY|SUBJECT_HASH_KEY|SUBJECT_ENCRYPTION_KEY|DATABASE_URL)"', settings_text
        )
    )
    # Variables read outside the settings (make run's server command, ...).
    for package in ("governance", "consent", "retention"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', path.read_text()))
    if re.search(r'env_str\(\s*f"EXTERNAL_DATABASE_URL_', settings_text):
        names.add("EXTERNAL_DATABASE_URL_<ALIAS>")
    assert len(names) > 50, "the settings are no longer read the way this test expects"
    undocumented = sorted(names - set(documented_settings()))
    assert not undocumented, f"document these in docs/configuration.md: {undocumented}"


def _import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Imports the settings in a fresh interpreter with only `env` (and PATH)."""
    return subprocess.run(
        [sys.executable, "-c", "import governance.settings"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_its_secrets():
    result = _import_settings({"DEBUG": "0"})
    assert result.returncode != 0
    for name in ("SECRET_KEY", "SUBJECT_HASH_KEY", "SUBJECT_ENCRYPTION_KEY", "DATABASE_URL"):
        assert name in result.stderr


# Production secrets long enough for the minimums (tests/test_deploy_security.py).
PRODUCTION_SECRETS = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-like-secret-key-of-more-than-fifty-characters-0123456789",
    "SUBJECT_HASH_KEY": "a-production-like-subject-hash-key-0123456789",
    "SUBJECT_ENCRYPTION_KEY": "dGVzdC1zdWJqZWN0LWVuY3J5cHRpb24ta2V5LTMyYnk",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/governance",
}


def test_production_starts_with_its_secrets():
    result = _import_settings(PRODUCTION_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "61"])
def test_a_memo_lifetime_outside_0_to_60_seconds_is_refused(value):
    result = _import_settings({"DEBUG": "1", "HOT_READ_CACHE_SECONDS": value})
    assert result.returncode != 0
    assert "HOT_READ_CACHE_SECONDS" in result.stderr


@pytest.mark.parametrize(
    "tables",
    [
        '[{"name": "t", "uri": "/lake/t"}]',
        '[{"name": "t", "uri": "/lake/t", "id_column": "id", "timestamp_column": "at",'
        ' "id_kind": "email"}]',
    ],
)
def test_a_lake_table_without_its_columns_or_with_an_unknown_id_kind_is_refused(tables):
    result = _import_settings({"DEBUG": "1", "RETENTION_LAKEHOUSE_TABLES": tables})
    assert result.returncode != 0
    assert "RETENTION_LAKEHOUSE_TABLES" in result.stderr


@pytest.mark.parametrize("value", ["xml", "10.0.0.0/33"])
def test_a_bad_log_format_or_metrics_network_is_refused(value):
    name = "LOG_FORMAT" if value == "xml" else "METRICS_ALLOWED_NETWORKS"
    result = _import_settings({"DEBUG": "1", name: value})
    assert result.returncode != 0
    assert name in result.stderr


# --- the Grafana dashboard and the Prometheus alert rules -------------------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "governance-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# Suffixes Prometheus adds to a family's name in its samples.
_SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def metric_names(expression: str) -> set[str]:
    """The service's metric families a PromQL expression reads."""
    names = set()
    for name in re.findall(r"\bgovernance_[a-z_]+\b", expression):
        for suffix in _SAMPLE_SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def test_the_alerts_cover_what_the_operator_must_hear_of():
    rules = alert_rules()
    assert all(rule["alert"] and rule["expr"] and rule["labels"]["severity"] for rule in rules)
    read = {name for rule in rules for name in metric_names(rule["expr"])}
    assert {
        "governance_outbox_lag_seconds",
        "governance_rights_requests_overdue",
        "governance_purge_runs",
        "governance_webhook_deliveries_parked",
        "governance_http_requests",
    } <= read
    assert any('status=~"5.."' in rule["expr"] for rule in rules)
    assert any('status="failed"' in rule["expr"] for rule in rules)
    assert yaml.safe_load(PROMETHEUS.read_text())["rule_files"] == ["alerts.yml"]


@pytest.mark.django_db
def test_every_metric_the_dashboard_and_alerts_read_is_in_a_scrape(
    api, django_capture_on_commit_callbacks
):
    from tests.live import Receiver
    from tests.metrics_scrape import drive_every_fact, samples, scrape

    receiver = Receiver().start()
    try:
        drive_every_fact(api, receiver.url, django_capture_on_commit_callbacks)
    finally:
        receiver.stop()
    scraped = {name for name, got in samples(scrape()).items() if got}
    expressions = dashboard_expressions() + [rule["expr"] for rule in alert_rules()]
    assert len(expressions) > 15
    for expression in expressions:
        missing = metric_names(expression) - scraped
        assert not missing, f"{expression!r} reads {sorted(missing)}, absent from a scrape"
    # Every listed metric is on the dashboard.
    on_dashboard = {name for e in dashboard_expressions() for name in metric_names(e)}
    assert {n for n in scraped if n.startswith("governance_")} - on_dashboard <= {
        "governance_ledger_verification_breaks"
    }
