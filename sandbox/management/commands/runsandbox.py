"""`manage.py runsandbox [ADDR:PORT]`: the sandbox (a local Apiframe) alone, configured from SANDBOX_* variables."""

from __future__ import annotations

import signal
from types import FrameType

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox.server import SandboxConfig, SandboxServer

DEFAULT_ADDR = "127.0.0.1:8765"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (docker stop, a process manager) ends the serve loop the same way Ctrl-C does.
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve the sandbox, a local stand-in for the Apiframe API, until Ctrl-C or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=DEFAULT_ADDR, help=f"ADDR:PORT (default {DEFAULT_ADDR})")

    def handle(self, *args: object, **options: str) -> None:
        host, _, port = options["addrport"].rpartition(":")
        if not port.isdigit():
            raise CommandError(f"expected ADDR:PORT, got {options['addrport']!r}")
        try:
            config = SandboxConfig.from_env()
        except ValueError as error:
            raise CommandError(f"bad SANDBOX_* setting: {error}") from error
        server = SandboxServer(host or "127.0.0.1", int(port), config)
        faults = ", ".join(f"{name}={rate}" for name, rate in config.faults.items()) or "none"
        self.stdout.write(f"Sandbox Apiframe at {server.url} (key from SANDBOX_API_KEY, faults: {faults})")
        self.stdout.write("Quit with CONTROL-C.")
        self.stdout.flush()  # whoever started us (make run, a test) may be waiting for the URL line
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            self.stdout.write("Sandbox stopped.")
