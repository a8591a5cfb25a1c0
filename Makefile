# RTA server: set-up, run, test and benchmark from a clean clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# Tests talk to the machine's PostgreSQL and Redis (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rta
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install install-dev protos migrate run run-auth test test-auth test-embedded fuzz lint bench clean

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $(STAMP)

# Test, lint and benchmark tools on top of the runtime set (`make run` does not need them).
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP) protos

install-dev: $(DEV_STAMP) protos

protos: $(STAMP)
	$(PY) -c "from rta_site import protos; built = protos.build(force=True); print(f'compiled {len(built)} proto files')"

migrate: install
	$(PY) manage.py migrate --noinput

# On an empty database, offer the demo sessions first (asks on a terminal, else prints a hint).
run: migrate
	$(PY) manage.py load_demo --offer
	$(PY) manage.py serve

# `make run` with OAuth 2.0 on and the embedded authority (docs/security.md); a "demo" client is made once.
AUTH_ENV := RTA_AUTH_ENABLED=true RTA_AUTH_AUTHORITY=embedded
run-auth: migrate
	$(PY) manage.py load_demo --offer
	@$(AUTH_ENV) $(PY) manage.py issue_token demo >/dev/null 2>&1 || \
		$(AUTH_ENV) $(PY) manage.py create_client demo --scopes "rta.read rta.write" >/dev/null
	@url=$${RTA_PUBLIC_URL:-http://127.0.0.1:8080}; \
		echo "Auth is on (embedded authority, issuer $$url/o). A token of the demo client, for an hour:"; \
		echo "  export RTA_AUTH_TOKEN=\$$($(AUTH_ENV) $(PY) manage.py issue_token demo)"; \
		echo "  curl -H \"Authorization: Bearer \$$RTA_AUTH_TOKEN\" $$url/rta/v2/sessions"
	$(AUTH_ENV) $(PY) manage.py serve

test: install-dev
	RTA_DATABASE_URL=$${RTA_DATABASE_URL:-$(TEST_DATABASE_URL)} RTA_TEST_REDIS_URL=$${RTA_TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest -n 2 --dist loadfile -q
	$(MAKE) --no-print-directory test-auth
	$(MAKE) --no-print-directory test-embedded

# The suite again with auth on (tests/auth_mode.py: in-process clients send a token), so no endpoint is
# left open by accident. Left out: files whose tests only talk to servers they start in other processes
# (those run with auth off) and the auth tests themselves (the plugin deselects them).
AUTH_MODE_IGNORE := test_live_websocket test_serve test_ingest_kafka test_data_durability test_fuzz_schema \
	test_http_flow_control test_settings_strict
test-auth: install-dev
	RTA_DATABASE_URL=$${RTA_DATABASE_URL:-$(TEST_DATABASE_URL)} RTA_TEST_REDIS_URL=$${RTA_TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest -n 2 --dist loadfile -q -p tests.auth_mode $(AUTH_MODE_IGNORE:%=--ignore=tests/%.py)

# The query dialect again on the embedded default database (SQLite), whose SQL differs.
test-embedded: install-dev
	RTA_DATABASE_URL=sqlite:///$(CURDIR)/var/test-embedded.sqlite3 \
		$(PY) -m pytest -q -m embedded

# Schemathesis against the server's own OpenAPI document: no 5xx, no schema violation
# (FUZZ_SECONDS, default 25, bounds it; FUZZ_SEED picks the seed).
fuzz: install-dev
	$(PY) -m pytest -q -m fuzz tests/test_fuzz_schema.py

# Style (ruff), formatting and the import-linter contracts of pyproject.toml (apps depend one way).
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: install-dev
	RTA_DATABASE_URL=$${RTA_DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache
	find protos -name '*_pb2*.py*' -delete
