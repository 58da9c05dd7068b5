"""One poller runs rounds at a time, however many copies are started: they share a lease (a Redis key with
REDIS_URL, else a row of the database). The holder SIGKILLed, another copy takes over within a lease; the holder
stopped gracefully gives the lease back at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.stack import redis_server
from tests.test_production import MANAGE, production_database, started, wait_until

LEASE_SECONDS = 2.0


def rounds(log: Path) -> int:
    return log.read_text().count("poll round at ")


@pytest.mark.parametrize("engine", ["redis", "database"])
def test_one_of_three_pollers_runs_rounds_and_another_takes_over_when_it_is_killed(tmp_path, engine):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MJSTUDIO_", "TASKS_", "REDIS_"))}
    with contextlib.ExitStack() as stack:
        env = {
            **base,
            "DATABASE_URL": stack.enter_context(production_database(tmp_path)),  # PostgreSQL on CI, else SQLite
            "MJSTUDIO_POLLER_LEASE_SECONDS": str(LEASE_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True)  # noqa: S603
        if engine == "redis":
            env["REDIS_URL"] = stack.enter_context(redis_server())
        logs = [tmp_path / f"poller-{n}.log" for n in range(3)]
        command = [*MANAGE, "pollapiframe", "--interval", "0.2", "-v", "2"]
        pollers = [stack.enter_context(started(command, env, log)) for log in logs]

        wait_until(lambda: sum(rounds(log) > 0 for log in logs) == 1, "one poller running rounds", seconds=30)
        time.sleep(3 * LEASE_SECONDS)  # the others had every chance to take the lease meanwhile
        counts = [rounds(log) for log in logs]
        assert sorted(count > 0 for count in counts) == [False, False, True], counts
        holder = counts.index(max(counts))
        assert counts[holder] >= 10  # rounds go on every 0.2 s

        killed_at = time.monotonic()
        os.kill(pollers[holder].pid, signal.SIGKILL)
        pollers[holder].wait(timeout=10)
        others = [n for n in range(3) if n != holder]
        wait_until(lambda: any(rounds(logs[n]) > 0 for n in others), "another poller taking over", seconds=30)
        took_over_in = time.monotonic() - killed_at
        time.sleep(3 * LEASE_SECONDS)
        running = [n for n in others if rounds(logs[n]) > 0]
        assert len(running) == 1, [rounds(log) for log in logs]

        # Stopped with SIGTERM, the new holder hands over at once: the last copy runs rounds within a renewal.
        (successor,) = running
        (last,) = [n for n in others if n != successor]
        stopped_at = time.monotonic()
        pollers[successor].send_signal(signal.SIGTERM)
        assert pollers[successor].wait(timeout=20) == 0
        wait_until(lambda: rounds(logs[last]) > 0, "the last poller taking over", seconds=30)
        handed_over_in = time.monotonic() - stopped_at

    assert took_over_in < 2 * LEASE_SECONDS + 3  # within a lease and a renewal, with room for a loaded machine
    assert handed_over_in < LEASE_SECONDS + 3
    for log in logs:
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_it_gives_a_database_lease_to_one_holder_until_it_runs_out_or_is_released(db):
    from datetime import timedelta

    from django.utils import timezone

    from generations.models import Chore
    from generations.services.leases import DatabaseLease

    first, second = DatabaseLease(name="poller", seconds=30), DatabaseLease(name="poller", seconds=30)
    assert first.hold() is True
    assert second.hold() is False  # held, not run out
    assert first.hold() is True  # renewed by its holder
    Chore.objects.filter(name="lease:poller").update(last_run_at=timezone.now() - timedelta(seconds=1))
    assert second.hold() is True  # the holder stopped renewing: taken over
    assert first.hold() is False  # and the old holder knows it lost it
    second.release()
    assert first.hold() is True  # given back: free at once


def test_a_poller_run_once_skips_its_round_while_another_holds_the_lease(db, capsys):
    from django.core.management import call_command

    from generations.services.leases import DatabaseLease

    holder = DatabaseLease(name="poller", seconds=30)
    assert holder.hold()
    call_command("pollapiframe", "--once")
    assert "Another poller holds the lease: no round run." in capsys.readouterr().out
    holder.release()
    call_command("pollapiframe", "--once", "-v", "2")
    assert "poll round at " in capsys.readouterr().out
