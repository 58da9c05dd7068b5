"""Deploy checks (`manage.py check --deploy`): what production needs from the Apiframe settings.

They are reported, never enforced at startup: production mode may point at a sandbox started apart (CI, staging).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register

SANDBOX_API_KEY = "sandbox-key"  # the sandbox's default key, public on purpose
WEBHOOK_SECRET_MIN_LENGTH = 32


def apiframe_is_real() -> bool:
    """The base URL is Apiframe's own (api.apiframe.ai, or its older apiframe.pro), not a sandbox or a proxy."""
    host = urlsplit(settings.APIFRAME_BASE_URL).hostname or ""
    return any(host == domain or host.endswith(f".{domain}") for domain in ("apiframe.ai", "apiframe.pro"))


@register(deploy=True)
def check_apiframe_is_not_the_sandbox(app_configs: object, **kwargs: object) -> list[Error]:
    """Production must talk to the real Apiframe: the sandbox is for laptops and tests."""
    if settings.APIFRAME_IS_SANDBOX:
        return [
            Error(
                f"APIFRAME_BASE_URL points at this machine ({settings.APIFRAME_BASE_URL}): the sandbox.",
                hint="Set APIFRAME_BASE_URL, APIFRAME_FETCH_URL and APIFRAME_API_KEY for the real Apiframe.",
                id="generations.E001",
            )
        ]
    return []


@register(deploy=True)
def check_apiframe_key_is_real(app_configs: object, **kwargs: object) -> list[Error]:
    """The real Apiframe refuses every call without a key of our plan: catch it before the first submit fails."""
    key = settings.APIFRAME_API_KEY.strip()
    if apiframe_is_real() and (not key or key == SANDBOX_API_KEY):
        return [
            Error(
                "APIFRAME_API_KEY is "
                + ("empty" if not key else "the sandbox's key")
                + f" while APIFRAME_BASE_URL is the real Apiframe ({settings.APIFRAME_BASE_URL}).",
                hint="Set APIFRAME_API_KEY to the key of your Apiframe plan (its dashboard, API keys).",
                id="generations.E002",
            )
        ]
    return []


@register(deploy=True)
def check_webhook_secret_is_long(app_configs: object, **kwargs: object) -> list[Error]:
    """The secret is all that proves a webhook comes from Apiframe: it must not be guessable."""
    if len(settings.APIFRAME_WEBHOOK_SECRET) < WEBHOOK_SECRET_MIN_LENGTH:
        return [
            Error(
                f"APIFRAME_WEBHOOK_SECRET has {len(settings.APIFRAME_WEBHOOK_SECRET)} characters; "
                f"at least {WEBHOOK_SECRET_MIN_LENGTH} are needed.",
                hint='Generate one: python -c "import secrets; print(secrets.token_urlsafe(32))"',
                id="generations.E003",
            )
        ]
    return []


@register(deploy=True)
def check_webhook_url_is_https(app_configs: object, **kwargs: object) -> list[Error]:
    """Apiframe sends the secret with every webhook: over plain http anyone on the way could read it."""
    url = settings.APIFRAME_WEBHOOK_URL
    if url and urlsplit(url).scheme != "https":
        return [
            Error(
                f"APIFRAME_WEBHOOK_URL is not https ({url}).",
                hint="Use the public https:// address of /webhooks/apiframe/ (your TLS proxy's), "
                "or leave it empty to rely on polling alone.",
                id="generations.E004",
            )
        ]
    return []
