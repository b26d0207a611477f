"""The documentation: the site builds strictly, the README stays a front door whose links
and examples point at what exists, and docs/api.md lists every error code the API can send.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
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
