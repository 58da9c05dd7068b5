"""The sandbox's URLconf: Apiframe's paths, the sandbox's own image CDN, and its stats page.

Served only by sandbox.server (request.urlconf), never included in the studio's URLconf.
"""

from __future__ import annotations

from django.urls import path, re_path

from sandbox import views
from sandbox.engine import ACTIONS

urlpatterns = [
    *(path(f"pro/{action}", views.create, {"action": action}, name=f"pro-{action}") for action in ACTIONS),
    path("fetch", views.fetch, name="fetch"),
    path("fetch-many", views.fetch_many, name="fetch-many"),
    path("account", views.account, name="account"),
    path("cdn/<uuid:task_id>/<str:name>.png", views.image, name="image"),
    # Not part of Apiframe: request counters for benchmarks and curious developers.
    path("_sandbox/stats", views.stats, name="stats"),
    # Not part of Apiframe either: every task made and how it ended, for the chaos run's comparison.
    path("_sandbox/tasks", views.tasks, name="tasks"),
    re_path(r"", views.not_found),
]
