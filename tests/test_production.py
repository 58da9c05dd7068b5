"""Production mode end to end, as an operator runs it: `manage.py runstudio` with DEBUG off (gunicorn, collected
static, the database of DATABASE_URL: PostgreSQL on CI), a sandbox started apart standing in for Apiframe, and a
TLS proxy in front that sets X-Forwarded-Proto, as README.md's Deploy section asks. Real Chromium logs in over
https, submits a prompt and sees the four images of the grid; nothing answers 500."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import environ
import pytest
import requests
import trustme
from playwright.sync_api import expect

from bench.stack import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]
PASSWORD = "a-long-operator-password"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
FORWARDED = {"x-forwarded-proto", "x-forwarded-for", "content-length"}
FINISHED_TIMEOUT = 30_000  # ms


class _ProxyHandler(BaseHTTPRequestHandler):
    """What nginx does in README.md's Deploy section: TLS in, plain HTTP to gunicorn with X-Forwarded-Proto."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.do_handshake()  # in this handler's thread, so a slow client never blocks accepting
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | FORWARDED}
        headers |= {"X-Forwarded-Proto": "https", "X-Forwarded-For": self.client_address[0]}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = _forward


@contextlib.contextmanager
def tls_proxy(upstream_port: int, cert: trustme.LeafCert) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _ProxyHandler)
    server.daemon_threads = True
    server.upstream_port = upstream_port
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def production_database(tmp_path: Path) -> Iterator[str]:
    """DATABASE_URL's server in a database of the stack's own (PostgreSQL on CI), else a SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{tmp_path / 'production.sqlite3'}"
        return
    import psycopg

    config = environ.Env.db_url_config(url)
    name = f"{config['NAME']}_production_{os.getpid()}"
    server = {
        "host": config["HOST"],
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "password": config["PASSWORD"],
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        # FORCE ends the stack's leftover sessions; an autovacuum worker (not ours to end without
        # pg_signal_backend) may be visiting the new database: it finishes within moments, so try again.
        for attempt in range(20):
            try:
                with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except psycopg.errors.InsufficientPrivilege:
                if attempt == 19:
                    raise
                time.sleep(0.5)


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if condition():
                return
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


def test_production_mode_logs_in_submits_a_prompt_and_shows_the_grid(chromium, tmp_path, artifacts):
    port, sandbox_port = free_port(), free_port()
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APIFRAME_", "SANDBOX_"))}

    with production_database(tmp_path) as database_url, tls_proxy(port, cert) as public_url:
        env = {
            **base,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "production-test-" + "k" * 50,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(tmp_path / "media"),
            "APIFRAME_BASE_URL": f"{sandbox}/pro",
            "APIFRAME_FETCH_URL": sandbox,
            "APIFRAME_API_KEY": "staging-key",
            "APIFRAME_WEBHOOK_SECRET": "production-test-webhook-secret-0123456789",
            "APIFRAME_WEBHOOK_URL": f"{public_url}/webhooks/apiframe/",
            "LOG_LEVEL": "WARNING",
        }
        sandbox_env = {  # started apart, with an environment of its own (as a staging box would)
            **base,
            "SANDBOX_API_KEY": "staging-key",
            "SANDBOX_TASK_SECONDS": "1",
            "REQUESTS_CA_BUNDLE": str(ca_file),  # the sandbox trusts our proxy's certificate, as Apiframe a real one
        }
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [*MANAGE, "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"],
            env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            check=True,
        )
        with (
            started([*MANAGE, "runsandbox", f"127.0.0.1:{sandbox_port}"], sandbox_env, tmp_path / "sandbox.log"),
            started([*MANAGE, "runstudio", "--port", str(port)], env, tmp_path / "studio.log") as studio,
        ):
            wait_until(lambda: requests.get(f"{sandbox}/_sandbox/stats", timeout=1).ok, "the sandbox")
            wait_until(lambda: requests.get(f"{public_url}/health/", verify=ca_file, timeout=2).ok, "the studio")

            context = chromium.new_context(viewport={"width": 1366, "height": 900}, ignore_https_errors=True)
            page = context.new_page()
            failures: list[str] = []
            page.on("response", lambda r: r.status >= 500 and failures.append(f"{r.status} {r.url}"))
            page.on("pageerror", lambda error: failures.append(str(error)))
            try:
                page.goto(f"{public_url}/")
                expect(page.get_by_role("button", name="Log in")).to_be_visible()
                assert "mjstudio-demo" not in page.content()  # no demo login in production
                page.get_by_label("Username").fill("ops")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.get_by_role("textbox", name="Prompt").fill("a lighthouse in fog, production run")
                page.get_by_role("button", name="Imagine").click()
                card = page.locator("#cards > article.card").first
                expect(card).to_contain_text("a lighthouse in fog")
                expect(card).to_have_attribute("data-status", "finished", timeout=FINISHED_TIMEOUT)
                expect(card).to_have_attribute("data-ready", "true", timeout=FINISHED_TIMEOUT)
                images = card.locator(".shot__link img")
                expect(images).to_have_count(4)
                page.wait_for_function(
                    "card => [...card.querySelectorAll('.shot__link img')]"
                    ".every((i) => i.complete && i.naturalWidth > 0)",
                    arg=card.element_handle(),
                    timeout=FINISHED_TIMEOUT,
                )
                stylesheet = page.locator("link[rel=stylesheet]").first.get_attribute("href")
                page.screenshot(path=artifacts / "production-grid.png", full_page=True)
            finally:
                context.close()
            assert failures == []
            assert studio.poll() is None

            static = requests.get(f"{public_url}{stylesheet}", verify=ca_file, timeout=5)
            assert static.status_code == 200
            assert static.headers["Cache-Control"] == "max-age=315360000, public, immutable"
            assert static.headers["Content-Encoding"] in ("br", "gzip")  # the compressed copy collectstatic made
            webhooks = requests.get(f"{sandbox}/_sandbox/stats", timeout=5).json()["webhooks"]
            assert webhooks.get("sent", 0) > 0, webhooks  # updates came in over https, through the proxy
            assert webhooks.get("rejected", 0) == webhooks.get("failed", 0) == 0, webhooks

    log = (tmp_path / "studio.log").read_text()
    assert "Production mode pointed at a sandbox" in log
    assert "Log in as" not in log
    assert "gunicorn" in log and "Traceback" not in log
