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
    "APIFRAME_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    "APIFRAME_WEBHOOK_URL": "https://studio.example.com/webhooks/apiframe/",
}
SANDBOX = {
    "APIFRAME_BASE_URL": "http://127.0.0.1:8765/pro",
    "APIFRAME_FETCH_URL": "http://127.0.0.1:8765",
    "APIFRAME_API_KEY": "sandbox-key",
}


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", tmp_path=tmp_path, **env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mjstudio will not start: DJANGO_DEBUG is false and DJANGO_SECRET_KEY not set (README.md, Deploy)."
    ]


def test_production_names_every_missing_variable_in_one_line_and_runs_nothing(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k not in ("DJANGO_ALLOWED_HOSTS", "APIFRAME_API_KEY")}
    env["APIFRAME_WEBHOOK_SECRET"] = "  "  # blank counts as missing
    result = manage("migrate", tmp_path=tmp_path, **env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "mjstudio will not start: DJANGO_DEBUG is false and DJANGO_ALLOWED_HOSTS, APIFRAME_API_KEY, "
        "APIFRAME_WEBHOOK_SECRET not set (README.md, Deploy)."
    )
    assert not (tmp_path / "db.sqlite3").exists()


def test_gunicorn_refuses_to_start_without_a_required_variable(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "APIFRAME_WEBHOOK_SECRET"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "APIFRAME_"))}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "mjstudio" / "gunicorn.conf.py")],
        env={**clean, **env, "PORT": "0", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "mjstudio will not start: DJANGO_DEBUG is false and APIFRAME_WEBHOOK_SECRET not set (README.md, Deploy)."
    )
    assert "Booting worker" not in result.stderr


def test_local_sqlite_runs_in_wal_mode_with_immediate_transactions_on_kept_connections(tmp_path):
    script = (
        "from django.db import connection;"
        "c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print(c.fetchone()[0], connection.settings_dict['OPTIONS']['transaction_mode'],"
        " connection.settings_dict['CONN_MAX_AGE'])"
    )
    result = manage("shell", "-c", script, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    # Kept: opening a SQLite connection (PRAGMAs, Django's SQL functions) cost more than a whole webhook.
    assert result.stdout.splitlines()[-1].split() == ["wal", "IMMEDIATE", "60"]


def test_check_deploy_refuses_the_sandbox_in_production(tmp_path):
    result = manage("check", "--deploy", tmp_path=tmp_path, **{**PRODUCTION, **SANDBOX})
    assert result.returncode == 1
    assert "generations.E001" in result.stderr


def test_production_against_a_sandbox_starts_all_the_same(tmp_path):
    """Only a missing variable stops startup; the deploy checks are for `check --deploy` alone."""
    result = manage("migrate", "-v0", tmp_path=tmp_path, **{**PRODUCTION, **SANDBOX})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "db.sqlite3").exists()


# --- The studio's own deploy checks, each alone (the rest of the settings as production has them) ---------

REAL_APIFRAME = {
    "APIFRAME_BASE_URL": "https://api.apiframe.ai/pro",
    "APIFRAME_FETCH_URL": "https://api.apiframe.ai",
    "APIFRAME_IS_SANDBOX": False,
    "APIFRAME_API_KEY": "a-key-from-the-environment",
    "APIFRAME_WEBHOOK_SECRET": "s" * 32,
    "APIFRAME_WEBHOOK_URL": "https://studio.example.com/webhooks/apiframe/",
}


def deploy_errors(settings, **overrides: object) -> list[str]:
    from django.core.checks.registry import registry

    for name, value in {**REAL_APIFRAME, **overrides}.items():
        setattr(settings, name, value)
    ours = [c for c in registry.get_checks(include_deployment_checks=True) if c.__module__ == "generations.checks"]
    assert len(ours) == 4
    return [message.id for check in ours for message in check(app_configs=None)]


def test_it_passes_the_real_apiframe_with_a_key_a_long_secret_and_an_https_webhook(settings):
    assert deploy_errors(settings) == []


def test_it_reports_a_missing_key_for_the_real_apiframe(settings):
    assert deploy_errors(settings, APIFRAME_API_KEY="") == ["generations.E002"]
    assert deploy_errors(settings, APIFRAME_API_KEY="   ") == ["generations.E002"]


def test_it_reports_the_sandbox_key_for_the_real_apiframe(settings):
    assert deploy_errors(settings, APIFRAME_API_KEY="sandbox-key") == ["generations.E002"]
    assert deploy_errors(settings, APIFRAME_BASE_URL="https://eu.api.apiframe.ai/pro", APIFRAME_API_KEY="sandbox-key")


def test_it_leaves_the_sandbox_key_to_the_sandbox_check(settings):
    sandbox = {"APIFRAME_BASE_URL": "http://127.0.0.1:8765/pro", "APIFRAME_IS_SANDBOX": True}
    assert deploy_errors(settings, APIFRAME_API_KEY="sandbox-key", **sandbox) == ["generations.E001"]


def test_it_reports_a_webhook_secret_shorter_than_32_characters(settings):
    assert deploy_errors(settings, APIFRAME_WEBHOOK_SECRET="s" * 31) == ["generations.E003"]
    assert deploy_errors(settings, APIFRAME_WEBHOOK_SECRET="s" * 32) == []


def test_it_reports_a_webhook_url_that_is_not_https(settings):
    assert deploy_errors(settings, APIFRAME_WEBHOOK_URL="http://studio.example.com/webhooks/apiframe/") == [
        "generations.E004"
    ]
    assert deploy_errors(settings, APIFRAME_WEBHOOK_URL="") == []  # polling only is a choice, not a mistake


def test_check_deploy_fails_on_a_short_webhook_secret(tmp_path):
    result = manage("check", "--deploy", tmp_path=tmp_path, **{**PRODUCTION, "APIFRAME_WEBHOOK_SECRET": "short"})
    assert result.returncode == 1
    assert "generations.E003" in result.stderr
    assert "5 characters" in result.stderr


def test_a_403_is_logged_in_one_line_without_its_traceback(caplog, rf):
    from django.core.exceptions import PermissionDenied
    from django.http import HttpResponseForbidden
    from django.utils.log import log_response

    request = rf.get("/team/settings/")
    try:  # as Django's handler logs a view's PermissionDenied
        raise PermissionDenied("Only the team's owners can do this.")
    except PermissionDenied as exc:
        log_response("Forbidden (Permission denied): %s", request.path, response=HttpResponseForbidden(), exception=exc)
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "WARNING" and record.getMessage() == "Forbidden (Permission denied): /team/settings/"
    assert record.exc_info is None and "Traceback" not in caplog.text
