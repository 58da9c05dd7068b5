from __future__ import annotations

from django.urls import path

from generations.views import accounts, provenance, studio, system, tasks

app_name = "generations"

urlpatterns = [
    path("", studio.studio, name="studio"),
    path("studio/pulse/", studio.studio_pulse, name="pulse"),
    path("tasks/", studio.task_create, name="task_create"),
    path("tasks/<int:pk>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:pk>/act/", tasks.task_act, name="task_act"),
    path("tasks/<int:pk>/retry/", tasks.task_retry, name="task_retry"),
    path("tasks/<int:pk>/export/", provenance.task_export, name="task_export"),
    path("collections/<int:pk>/export/", provenance.collection_export, name="collection_export"),
    path("compare/", provenance.compare, name="compare"),
    path("images/<int:pk>/<str:variant>/", tasks.image_file, name="image_file"),
    path("team/", accounts.team_switch, name="team_switch"),
    path("webhooks/apiframe/", system.apiframe_webhook, name="apiframe_webhook"),
    path("health/", system.health, name="health"),
]
