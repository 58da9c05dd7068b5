from __future__ import annotations

from django.urls import path

from generations.live import views as live
from generations.views import (
    accounts,
    collections,
    invitations,
    library,
    moderation,
    provenance,
    queue,
    review,
    studio,
    system,
    tasks,
    team,
    usage,
)

app_name = "generations"

urlpatterns = [
    # First, since URLs are tried in order: the webhook takes a thousand requests a second, pages a few.
    path("webhooks/apiframe/", system.apiframe_webhook, name="apiframe_webhook"),
    path("health/", system.health, name="health"),
    path("", studio.studio, name="studio"),
    path("studio/pulse/", studio.studio_pulse, name="pulse"),
    path("studio/events/", live.studio_events, name="studio_events"),
    path("tasks/", studio.task_create, name="task_create"),
    path("tasks/<int:pk>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:pk>/act/", tasks.task_act, name="task_act"),
    path("tasks/<int:pk>/actions/", tasks.task_image_actions, name="task_image_actions"),
    path("tasks/<int:pk>/retry/", tasks.task_retry, name="task_retry"),
    path("tasks/<int:pk>/export/", provenance.task_export, name="task_export"),
    path("tasks/<int:pk>/flag/", moderation.task_flag, name="task_flag"),
    path("collections/", collections.collection_list, name="collections"),
    path("collections/new/", collections.collection_create, name="collection_create"),
    path("collections/<int:pk>/rename/", collections.collection_rename, name="collection_rename"),
    path("collections/<int:pk>/delete/", collections.collection_delete, name="collection_delete"),
    path("collections/<int:pk>/export/", provenance.collection_export, name="collection_export"),
    # Before image_file, whose <variant> would otherwise take "collections" or "favourite".
    path("images/<int:pk>/collections/", collections.image_collections, name="image_collections"),
    path("images/<int:pk>/flag/", moderation.image_flag, name="image_flag"),
    path("compare/", provenance.compare, name="compare"),
    path("library/", library.library, name="library"),
    path("library/stacks/<int:pk>/", library.library_stack, name="library_stack"),
    path("images/<int:pk>/favourite/", library.image_favourite, name="image_favourite"),
    path("images/<int:pk>/review/", review.image_review, name="image_review"),
    path("library/approved/export/", provenance.approved_export, name="approved_export"),
    path("images/<int:pk>/<str:variant>/", tasks.image_file, name="image_file"),
    path("team/", accounts.team_switch, name="team_switch"),
    path("team/<int:pk>/queue/pause/", queue.queue_pause, name="queue_pause"),
    path("team/<int:pk>/queue/resume/", queue.queue_resume, name="queue_resume"),
    path("team/settings/", team.team_settings, name="team_settings"),
    path("team/blocklist/", team.blocklist_add, name="blocklist_add"),
    path("team/blocklist/<int:pk>/", team.blocklist_change, name="blocklist_change"),
    path("team/blocklist/<int:pk>/remove/", team.blocklist_remove, name="blocklist_remove"),
    path("team/invitations/", team.invitation_create, name="invitation_create"),
    path("team/invitations/<int:pk>/withdraw/", team.invitation_withdraw, name="invitation_withdraw"),
    path("team/members/<int:pk>/role/", team.member_role, name="member_role"),
    path("team/members/<int:pk>/remove/", team.member_remove, name="member_remove"),
    path("teams/", invitations.my_teams, name="my_teams"),
    path("teams/<int:pk>/leave/", invitations.team_leave, name="team_leave"),
    path("invitations/<int:pk>/accept/", invitations.invitation_accept, name="invitation_accept"),
    path("invitations/<int:pk>/decline/", invitations.invitation_decline, name="invitation_decline"),
    path("usage/", usage.usage, name="usage"),
    path("moderation/", moderation.moderation_queue, name="moderation"),
    path("moderation/act/", moderation.moderation_act, name="moderation_act"),
]
