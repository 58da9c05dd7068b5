from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


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
