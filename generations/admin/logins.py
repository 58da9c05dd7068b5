"""Login attempts: django-axes' own admin, its one action mended."""

from __future__ import annotations

from axes import admin as axes_admin
from axes.models import AccessAttempt
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """django-axes' list of login attempts. Its "Clean up expired attempts" reads `request.axes_attempt_time`,
    which axes sets only while it checks a login: from the admin the action raised AttributeError (a 500)."""

    @admin.action(description="Clean up expired attempts")
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        request.axes_attempt_time = None  # no login being checked: expired means older than the cool-off from now
        super().cleanup_expired_attempts(request, queryset)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
