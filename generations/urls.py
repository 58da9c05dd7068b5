from __future__ import annotations

from django.urls import path

from generations.views import accounts, library, studio, system, tasks

app_name = "generations"

urlpatterns = [
    path("", studio.studio, name="studio"),
    path("studio/pulse/", studio.studio_pulse, name="pulse"),
    path("tasks/", studio.task_create, name="task_create"),
    path("tasks/<int:pk>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:pk>/act/", tasks.task_act, name="task_act"),
    path("tasks/<int:pk>/retry/", tasks.task_retry, name="task_retry"),
    path("library/", library.library, name="library"),
    path("library/stacks/<int:pk>/", library.library_stack, name="library_stack"),
    # Before image_file, whose <variant> would take "favourite".
    path("images/<int:pk>/favourite/", library.image_favourite, name="image_favourite"),
    path("images/<int:pk>/<str:variant>/", tasks.image_file, name="image_file"),
    path("team/", accounts.team_switch, name="team_switch"),
    path("webhooks/apiframe/", system.apiframe_webhook, name="apiframe_webhook"),
    path("health/", system.health, name="health"),
]
