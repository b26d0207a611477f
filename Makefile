# The front door: `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PORT ?= 8000
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := $(UV) run --frozen python
# The embedded default: SQLite, in-process cache, SQLAlchemy broker; DEBUG for local use.
RUN_ENV := DEBUG=1
# Commands whose output is for the user: the app's start-up log lines left out.
QUIET_ENV := $(RUN_ENV) LOG_LEVEL=WARNING
# Tests: real PostgreSQL and Redis on loopback (see tests/settings.py for the defaults).
TEST_ENV := DJANGO_SETTINGS_MODULE=tests.settings

.PHONY: help install run test lint fmt docs bench services migrate clean enrol-totp key \
	admin-password fuzz

help:
	@echo "make run    - install, migrate, seed demo data, serve on http://127.0.0.1:$(PORT)"
	@echo "make key NAME=name SCOPES=a,b - make an API key and print only it (embedded database)"
	@echo "make admin-password STAFF=name - set a staff user's password (embedded database)"
	@echo "make enrol-totp STAFF=name - enrol a staff user's authenticator app (embedded database)"
	@echo "make test   - install, ensure PostgreSQL and Redis, run ruff, mypy and pytest"
	@echo "make lint   - ruff and mypy";  echo "make fmt    - ruff format and fix"
	@echo "make docs   - build the documentation site (docs/, mkdocs.yml) strictly into var/site"
	@echo "make bench  - benchmarks in bench/ (needs PostgreSQL)"
	@echo "make fuzz   - schemathesis over the API, longer than the suite's run (FUZZ_EXAMPLES, FUZZ_SEED)"
	@echo "make services - start PostgreSQL and Redis if they are not answering"
	@echo "make browser  - install Chromium, chromedriver and the examples' npm packages"
	@echo "make nginx    - install Debian's nginx (tests/test_nginx.py runs it in front of gunicorn)"

$(UV):
	@echo "uv not found: installing it with pip (python3 -m pip install --user uv)"
	python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv

install: $(UV)
	@$(UV) sync --frozen --quiet
	@$(MAKE) -s $(SPARK_JAR)

# The Python client's HMAC for Spark as a JVM function (clients/python/java/, built with the
# JDK's javac; the client's wheel builds it the same way). Without a JDK the client uses
# Spark's built-in sha2 instead.
SPARK_JAVA := $(shell find clients/python/java -name '*.java')
SPARK_JAR := clients/python/consent_client/jars/consent-spark.jar
$(SPARK_JAR): $(SPARK_JAVA) clients/python/java/build_jar.py
	@$(UV) run --frozen python clients/python/java/build_jar.py $@

# Silent, so `KEY=$$(make -s key ...)` captures the key alone.
migrate: install
	@$(QUIET_ENV) $(PY) manage.py migrate --no-input -v 0

# Local use only: gunicorn faces clients directly. Production puts nginx in front of it
# (docker-compose.yml, deploy/nginx/, docs/deploy-nginx.md).
# The demo credentials are printed at the start and again once web, worker and beat are up,
# below their banners.
run: migrate
	$(RUN_ENV) PORT=$(PORT) $(PY) manage.py run_embedded --port $(PORT) --seed-demo

# The embedded database of `make run`, from another terminal. An API key, printed alone:
#   KEY=$$(make -s key NAME=pipeline SCOPES=checks,consent:read)
key: install
	@$(if $(and $(NAME),$(SCOPES)),,$(error make key needs NAME=... and SCOPES=... (comma-separated \
	  of consent:write, consent:read, checks, rights, admin)))
	@$(QUIET_ENV) $(PY) manage.py migrate --no-input -v 0
	@$(QUIET_ENV) $(PY) manage.py create_api_key --name "$(NAME)" --scopes "$(SCOPES)"

# Asks for a new password for STAFF (the demo admin by default), twice.
STAFF ?= admin
admin-password: migrate
	@$(QUIET_ENV) $(PY) manage.py changepassword $(STAFF)

# Two-factor sign-in for the admin (docs/staff-accounts.md): prints the secret once.
enrol-totp: migrate
	$(RUN_ENV) $(PY) manage.py enrol_totp $(STAFF) $(if $(REPLACE),--replace)

services:
	@scripts/ensure_services.sh

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(TEST_ENV) $(UV) run --frozen mypy .

fmt: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# The documentation site: MkDocs (as DRF builds its own documentation) reads
# mkdocs.yml; --strict fails on a broken link or anchor and on a page missing from the nav.
docs: install
	$(UV) run --frozen mkdocs build --strict -f mkdocs.yml -d var/site

test: install services lint
	$(TEST_ENV) $(UV) run --frozen pytest

# The suite runs tests/test_openapi_fuzz.py with 25 examples per operation and a fixed seed;
# this runs the same test with more examples (and, with FUZZ_SEED, another seed).
FUZZ_EXAMPLES ?= 300
FUZZ_SEED ?= 16
fuzz: install services
	$(TEST_ENV) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) \
	  $(UV) run --frozen pytest tests/test_openapi_fuzz.py -p no:cacheprovider

bench: install services
	$(TEST_ENV) $(PY) bench/run_all.py

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

# Banner browser tests (issue 6): Debian's chromium and chromium-driver, installed with
# apt-get when missing (never a browser downloaded by a tool), and the examples' npm packages.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: browser
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver with apt-get"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; \
	fi
	@cd docs/examples && npm ci --no-audit --no-fund --silent

test: browser

# nginx tests (issue 11): Debian's nginx, installed with apt-get when missing. The tests
# start /usr/sbin/nginx themselves on a free port, in front of their own gunicorn.
.PHONY: nginx
nginx:
	@if [ ! -x /usr/sbin/nginx ]; then \
	  echo "installing nginx with apt-get"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q nginx; \
	fi

test: nginx
