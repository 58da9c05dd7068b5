"""Reading what a request carries (query and form values, the HX-Current-URL header) without trusting it: a value
that does not parse, or that the database could not hold, reads as absent instead of raising."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit, urlunsplit

from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# Primary keys are 64-bit (BigAutoField) on SQLite and PostgreSQL alike; a larger number names no row.
DB_INT_MAX = 2**63 - 1
# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() refuses or reads.
_DIGITS = re.compile(r"[0-9]{1,19}")
# What every database here stores, with a day to spare either side for time zones and small arithmetic.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def positive_int(value: str | None) -> int | None:
    """A positive integer written in ASCII digits that fits the database, else None."""
    if value is None or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if 0 < number <= DB_INT_MAX else None


def aware_datetime(value: str | None) -> datetime | None:
    """An ISO 8601 datetime in UTC (naive means the current time zone), clamped to what databases store; else
    None. Year 9999 at -05:00 is year 10000 in UTC: clamped, not an OverflowError on the way to the database."""
    try:
        parsed = parse_datetime(value or "")
    except (ValueError, OverflowError):  # a month 13, an offset of 99 hours
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return min(max(parsed, EARLIEST), LATEST).astimezone(UTC)


def current_url(request: HttpRequest) -> SplitResult | None:
    """The page an htmx request was sent from (HX-Current-URL), or None when absent or not a URL."""
    htmx = getattr(request, "htmx", None)
    url = htmx.current_url if htmx else None
    if not url:
        return None
    try:
        return urlsplit(url)
    except ValueError:  # "http://[x/" (an unclosed IPv6 bracket), among others
        return None


def current_path(request: HttpRequest) -> str | None:
    """The path and query of that page when it is on this site (django-htmx's current_url_abs_path, minus the
    ValueError a malformed header raises)."""
    parts = current_url(request)
    if parts is None or parts.scheme != request.scheme or parts.netloc != request.get_host():
        return None
    return urlunsplit(parts._replace(scheme="", netloc=""))
