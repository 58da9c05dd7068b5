"""Settings come from the environment: safe local defaults, a production mode that passes check --deploy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "APIFRAME_"))}
    clean["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "APIFRAME_BASE_URL": "https://api.apiframe.ai/pro",
    "APIFRAME_FETCH_URL": "https://api.apiframe.ai",
    "APIFRAME_API_KEY": "a-key-from-the-environment",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "studio.example.com",
    "APIFRAME_WEBHOOK_SECRET": "whsec-from-the-environment",
}


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_local_sqlite_runs_in_wal_mode_with_immediate_transactions(tmp_path):
    script = (
        "from django.db import connection;"
        "c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print(c.fetchone()[0], connection.settings_dict['OPTIONS']['transaction_mode'])"
    )
    result = manage("shell", "-c", script, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["wal", "IMMEDIATE"]


def test_check_deploy_refuses_the_sandbox_in_production(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if not k.startswith("APIFRAME_") or "SECRET" in k}
    result = manage("check", "--deploy", tmp_path=tmp_path, **env)
    assert result.returncode != 0
    assert "generations.E001" in result.stderr
