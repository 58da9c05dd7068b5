from __future__ import annotations

from django.urls import path

from generations import views

app_name = "generations"

urlpatterns = [
    path("", views.studio, name="studio"),
    path("studio/pulse/", views.studio_pulse, name="pulse"),
    path("tasks/", views.task_create, name="task_create"),
    path("tasks/<int:pk>/", views.task_detail, name="task_detail"),
    path("tasks/<int:pk>/act/", views.task_act, name="task_act"),
    path("tasks/<int:pk>/retry/", views.task_retry, name="task_retry"),
    path("images/<int:pk>/<str:variant>/", views.image_file, name="image_file"),
    path("team/", views.team_switch, name="team_switch"),
    path("webhooks/apiframe/", views.apiframe_webhook, name="apiframe_webhook"),
    path("health/", views.health, name="health"),
]
