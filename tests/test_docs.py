"""The documentation: the site builds strictly, the README stays a front door whose links
and examples point at what exists, and docs/api.md lists every error code the API can send.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.urls import Resolver404, resolve
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_the_site_builds_strictly(tmp_path):
    """A broken link or anchor, a link out of docs/, or a page missing from the nav fails."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml"]
    result = subprocess.run(
        [*command, "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for page in ("index", "api", "configuration", "architecture", "benchmarks"):
        assert (tmp_path / "site" / f"{page}.html").is_file(), page
    # The banner examples ship as static files of the site (tests/consent/browser.py serves
    # them from docs/examples/).
    assert (tmp_path / "site" / "examples" / "banner.html").is_file()


def test_the_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "the README is the front door: move reference to docs/"
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block, "the two commands come first"
    commands = [line.split()[:2] for line in first_block.group(1).splitlines() if line[:1] != " "]
    assert commands == [["make", "run"], ["make", "test"]]
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in re.findall(r"^  - [^:]+: (\w[\w-]*\.md)$", nav, re.M):
        assert f"(docs/{page}" in text, f"the README's map of docs misses docs/{page}"


def _headings_slugs(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slugify(h.strip(), "-") for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_readme_link_resolves():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) > 10
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to missing {path}"
        if anchor:
            assert anchor in _headings_slugs(target), f"README links to missing {link}"


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_every_example_request_names_a_real_endpoint():
    """The README's and the docs' curl lines reach a view, not the /api/ catch-all 404."""
    sources = [README, *DOCS.rglob("*.md")]
    paths = {
        path
        for source in sources
        for block in _shell_blocks(source.read_text())
        for path in re.findall(r"localhost:\d+(/[^\s\"']*)", block)
    }
    assert len(paths) >= 5
    for path in paths:
        try:
            match = resolve(path.split("?")[0])
        except Resolver404:  # pragma: no cover - the message says which
            pytest.fail(f"no view answers {path}")
        assert match.func.__name__ != "api_not_found", f"no API view answers {path}"


def _table_rows(page: Path) -> dict[str, list[str]]:
    rows = {}
    for line in page.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _domain_errors() -> dict[str, int]:
    """Every DomainError subclass in the code (every module of the apps is imported, not
    only those the URL conf loads: a task or a service may define one): code -> status."""
    import importlib
    import pkgutil

    from governance.errors import DomainError

    for package in ("governance", "consent", "retention"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".migrations." not in module.name and not module.name.endswith(("wsgi", "asgi")):
                importlib.import_module(module.name)

    found: dict[str, int] = {}
    pending = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        found[cls.code] = cls.status
    return found


def test_every_error_code_is_listed_with_its_status():
    rows = _table_rows(DOCS / "api.md")
    codes = _domain_errors()
    # Codes the handlers and DRF's mapping send without a DomainError class.
    for package in ("governance", "consent", "retention"):
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            for code in re.findall(r'error_body\(\s*"([a-z_]+)"', source):
                codes.setdefault(code, 0)
            for code in re.findall(r'\(drf\.\w+, "([a-z_]+)"\)', source):
                codes.setdefault(code, 0)
            for code in re.findall(r'default_code = "([a-z_]+)"', source):
                codes.setdefault(code, 0)
    assert len(codes) > 30
    missing = sorted(set(codes) - set(rows))
    assert not missing, f"list these in docs/api.md's error codes: {missing}"
    wrong = {c: (s, rows[c][0]) for c, s in codes.items() if s and rows[c][0] != str(s)}
    assert not wrong, f"docs/api.md gives the wrong status for: {wrong}"


def test_benchmarks_keep_only_the_latest_table_per_bench():
    """History goes to the CHANGELOG: one table per benchmark section."""
    sections = re.split(r"^## ", (DOCS / "benchmarks.md").read_text(), flags=re.M)[1:]
    assert {s.splitlines()[0] for s in sections} >= {"Checks", "Consent writes", "Purge"}
    for section in sections:
        tables = re.findall(r"^\|[- |]+\|$", section, re.M)
        assert len(tables) <= 1, f"{section.splitlines()[0]}: keep only the latest table"
    assert "## Benchmark history" in (ROOT / "CHANGELOG.md").read_text()


TOP_LEVEL = {
    *("bench", "clients", "consent", "deploy", "docs"),
    *("governance", "retention", "scripts", "tests"),
}


def test_every_file_the_docs_name_exists():
    """`consent/identity.py` or `tests/x.py::test_y` in the docs and the README: a moved
    module or a renamed function fails here, so the pages keep leading to the code."""
    named = set()
    for source in [README, *DOCS.rglob("*.md")]:
        for span in re.findall(r"`([a-z_]+/[\w./-]*(?:::\w+)?)`", source.read_text()):
            if span.split("/")[0] in TOP_LEVEL:
                named.add(span)
    assert len(named) > 20
    stale = []
    for span in sorted(named):
        path, _, name = span.partition("::")
        target = ROOT / path
        if not target.exists() or (name and name not in target.read_text()):
            stale.append(span)
    assert not stale, f"the docs name files or functions that are not there: {stale}"


# --- Commands a reader is told to run -----------------------------------------------------

# Not on PATH as printed on a fresh clone: uv lives in ~/.local/bin, python and pytest in
# .venv/bin (`make install` puts them there); a command says `.venv/bin/python` or `make`.
NOT_ON_PATH = {"uv", "python", "pip", "pytest", "celery", "gunicorn"}
COMPOSE_FILES = {"docker-compose.yml", "docker-compose.tls.yml"}


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def _logical_lines(block: str) -> list[str]:
    """A shell block's commands: continuation lines and multi-line quotes joined, comments
    and blank lines dropped."""
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending += ("\n" if pending else "") + line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the next line continues it
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            commands.append(pending)
        pending = ""
    assert not pending, f"unterminated command: {pending!r}"
    return commands


def _simple_commands(command: str) -> list[list[str]]:
    """Every simple command in `command`, `$(...)` substitutions included, as words."""
    found: list[list[str]] = []
    while match := re.search(r"\$\(([^()]*)\)", command):
        found += _simple_commands(match.group(1))
        command = command[: match.start()] + "X" + command[match.end() :]
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token.strip(";&|"):
            words.append(token)
            continue
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0], re.S):
            words.pop(0)  # VAR=value before the program
        if words:
            found.append(words)
        words = []
    return found


def _command_problems(words: list[str]) -> list[str]:
    """Why `words` would not run as printed from a fresh clone after `make run`."""
    from django.core.management import get_commands

    program, args = words[0], words[1:]
    problems = []
    if program in NOT_ON_PATH:
        problems.append(f"`{program}` is not on PATH as printed")
    if program == "make":
        targets = [a for a in args if re.fullmatch(r"[a-z][a-z0-9-]*", a)]
        problems += [f"no make target `{t}`" for t in targets if t not in _make_targets()]
    if program == "docker" and args[:1] == ["compose"]:
        files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
        problems += [f"no {f}" for f in files if f not in COMPOSE_FILES]
        services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
        if args[1:2] in (["exec"], ["run"]):
            rest = [a for a in args[2:] if not a.startswith("-") and a != "APP_DB_PASSWORD"]
            if rest[0] not in services:
                problems.append(f"no compose service `{rest[0]}`")
            elif rest[1] != "python" or not services[rest[0]].get("build"):
                problems.append("runs something other than the app image's python")
            args = rest[1:]
    if program.startswith(".venv/bin/"):
        if not (Path(sys.executable).parent / program.removeprefix(".venv/bin/")).exists():
            problems.append(f"`make install` puts no {program}")
    elif "/" in program and not (ROOT / program).exists():
        problems.append(f"no {program}")
    for i, arg in enumerate(args):
        command = args[i + 1] if arg == "manage.py" else ""
        if command and command != command.upper() and command not in get_commands():
            problems.append(f"no management command `{args[i + 1]}`")
        repo_file = re.fullmatch(r"(\./)?(bench|scripts|clients|deploy)/[\w./-]+", arg)
        if repo_file and not (ROOT / arg.split("[")[0]).exists():
            problems.append(f"no {arg}")
    return problems


# Inline code that is a command to run (not a command's name, not a path).
RUNS = r"\bmanage\.py\b|^(?:[A-Z_]+=\S+ )*(?:uv|make|python3?|\.venv/bin/\S+|docker) "


def _printed_commands() -> dict[str, list[str]]:
    """Every command the README and the docs print: their shell blocks' lines, and inline
    code that runs `manage.py`, uv or make."""
    printed: dict[str, list[str]] = {}
    for source in [README, *DOCS.rglob("*.md")]:
        text = source.read_text()
        commands = [line for block in _shell_blocks(text) for line in _logical_lines(block)]
        for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            span = " ".join(span.split())
            if re.search(RUNS, span):
                commands.append(span)
        printed[source.name] = commands
    return printed


def test_every_printed_command_runs_as_printed():
    """`uv run python manage.py ...` fails on a fresh clone (uv is not on PATH): each
    command the README and the docs print names a make target that exists, a program that
    is there (`.venv/bin/python`, a compose service's python) and files and management
    commands that exist."""
    printed = _printed_commands()
    assert any("make -s key" in c for c in printed["README.md"]), "the README's key line"
    assert sum(len(c) for c in printed.values()) > 25
    problems = {
        command: found
        for commands in printed.values()
        for command in commands
        for words in _simple_commands(command)
        if (found := _command_problems(words))
    }
    assert not problems, problems


def test_the_command_check_catches_what_a_newcomer_tripped_on():
    bad = [
        "DEBUG=1 uv run python manage.py create_api_key --name x",
        "make keys NAME=x",
        "KEY=$(.venv/bin/python manage.py create_api_keys --name x)",
        "docker compose exec worker-2 python manage.py verify_ledger",
        "python manage.py verify_ledger",
    ]
    for command in bad:
        assert any(_command_problems(w) for w in _simple_commands(command)), command
