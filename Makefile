# Everyday commands. `make run` and `make test` work on a fresh clone with Python 3.12 and make.
PYTHON ?= python3.12
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install run dev sandbox worker test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --group dev --editable '.[scale]'
	touch $@

# Every process of the Procfile (web through gunicorn, workers, poller), plus the sandbox in sandbox mode, in one
# command; Ctrl-C stops them all. Production differs only by environment variables (README.md, Deploy).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runstudio

# The same with Django's development server in place of gunicorn.
dev: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runstudio --dev

# The sandbox alone (a local Apiframe) on 127.0.0.1:8765.
sandbox: install
	$(PY) manage.py runsandbox

# Lint, check no migration is missing, then the whole suite (browser tests included). pytest's exit 5 ("no tests ran") is a failure here.
test: install
	$(PY) -m ruff check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: install
	$(PY) bench/sandbox_timing.py
	$(PY) bench/api_calls.py
	$(PY) bench/live_latency.py
	$(PY) bench/webhook_ingest.py
	$(PY) bench/library.py
	$(PY) bench/library_pages.py
	$(PY) bench/usage_page.py
	$(PY) bench/task_page.py
	$(PY) bench/export_memory.py
	$(PY) bench/blocklist.py
	$(PY) bench/admin_lists.py

clean:
	rm -rf $(VENV) media staticfiles test-artifacts db.sqlite3 db.sqlite3-wal db.sqlite3-shm

# The property-based suite with many more examples than CI runs (tests/test_fuzz.py: every route's parameters and
# headers, both forms, the webhook). Prefix DATABASE_URL=postgres://... to run it on PostgreSQL.
.PHONY: fuzz
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py $(ARGS)
