# Everyday commands. `make run` and `make test` work on a fresh clone with Python 3.12 and make.
PYTHON ?= python3.12
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install run sandbox worker test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --group dev --editable .
	touch $@

# Studio + worker + poller + sandbox in one command; Ctrl-C stops them all.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runstudio

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
	$(PY) bench/library.py

clean:
	rm -rf $(VENV) media staticfiles test-artifacts db.sqlite3 db.sqlite3-wal db.sqlite3-shm
