from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from generations import actions, blockmatch
from generations.live import stream


class Team(models.Model):
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")
    # Set on the team made for a user's first request: unique, so simultaneous first requests make one team.
    personal_for = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="personal_team",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Set by an owner: the team's queued tasks wait (nothing is sent upstream) until it is cleared.
    queue_paused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        # Creates, flags and shortlists.
        MEMBER = "member", "Member"
        # Also moderates the team from the site (review queue, hide/restore, blocklist), manages members,
        # approves images and pauses the team's queue. Staff (the Django admin) is the user's own flag.
        OWNER = "owner", "Owner"

    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    # When the user last chose to work here (switched to the team, or accepted its invitation). A new session
    # starts in the team chosen last, else in the personal team: never in one they were put in without choosing.
    chosen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("team", "user"), name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def open(self) -> InvitationQuerySet:
        """Pending and not yet lapsed: the ones an invitee can answer and an owner can withdraw."""
        return self.filter(state=Invitation.State.PENDING, expires_at__gt=timezone.now())

    def waiting_for(self, user: object) -> InvitationQuerySet:
        return self.open().filter(user=user)


class Invitation(models.Model):
    """An owner's offer of a place in their team. Nobody joins a team without accepting one (staff aside, in the
    admin). The owner sees the name as they typed it, never whether an account has it: `user` is resolved when
    the invitation is made and read only on the invitee's side."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        WITHDRAWN = "withdrawn", "Withdrawn"

    team = models.ForeignKey(Team, models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150)  # as the owner typed it
    # Case-folded: "Dora" and "dora" are one invitation (the constraint below).
    username_key = models.CharField(max_length=150, editable=False)
    # The active account of that name when the invitation was made, if any; None: nobody can answer it. Kept
    # when the account is deleted, so that the owner's list does not change then either.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False, related_name="invitations"
    )
    role = models.CharField(max_length=8, choices=Membership.Role, default=Membership.Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State, default=State.PENDING)
    answered_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        constraints = [
            # One pending invitation per team and name: a double click, or two owners at once, make one.
            models.UniqueConstraint(
                fields=("team", "username_key"), condition=Q(state="pending"), name="invitation_pending_once"
            ),
        ]
        indexes = [
            # The header's count on every page, and the invitee's list: Invitation.objects.waiting_for(user).
            models.Index(fields=("user", "expires_at"), condition=Q(state="pending"), name="invitation_waiting"),
        ]

    def __str__(self) -> str:
        return f"{self.username} to {self.team}"


class Prompt(models.Model):
    class Mode(models.TextChoices):
        FAST = "fast", "Fast"
        TURBO = "turbo", "Turbo"

    MAX_LENGTH = 4000
    ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")

    team = models.ForeignKey(Team, models.CASCADE, related_name="prompts")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="prompts")
    text = models.TextField(max_length=MAX_LENGTH)
    # Lower-cased, accents stripped ("cà phê" -> "ca phe") so history search matches either spelling.
    search_text = models.TextField(editable=False, default="")
    mode = models.CharField(max_length=8, choices=Mode, default=Mode.FAST)
    aspect_ratio = models.CharField(max_length=8, default="1:1")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.text[:80]


class TaskQuerySet(models.QuerySet["Task"]):
    def in_flight(self) -> TaskQuerySet:
        return self.filter(status__in=Task.IN_FLIGHT)

    def for_team(self, team: Team) -> TaskQuerySet:
        return self.filter(team=team)

    def visible_to(self, user: object) -> TaskQuerySet:
        """Hidden tasks are gone for everyone but staff (who see them, marked as hidden)."""
        return self if getattr(user, "is_staff", False) else self.filter(hidden_at=None)

    def for_cards(self, *, user: object = None) -> TaskQuerySet:
        """With everything a task card shows, in a fixed number of queries. Given a user, only the images they
        may see (a hidden image leaves its card for non-staff)."""
        images = "images"
        if user is not None and not getattr(user, "is_staff", False):
            images = models.Prefetch("images", queryset=Image.objects.filter(hidden_at=None))
        return self.select_related("prompt", "created_by", "parent__prompt").prefetch_related(images)

    def update_visibly(self, *, at: datetime | None = None, **changes: object) -> int:
        """An update that a card shows: it also bumps `updated_at`, which the live refresh asks about ("what
        changed since?"). Every such change goes through here; bookkeeping (last_heard_at) does not."""
        if not stream.enabled():
            return self.update(updated_at=at or timezone.now(), **changes)
        # Live push names the changed tasks: exactly the rows read here (a row that starts to match meanwhile
        # is left for its own writer), published once the transaction commits.
        changed = list(self.values_list("pk", "team_id"))
        if not changed:
            return 0
        count = self.filter(pk__in=[pk for pk, _ in changed]).update(updated_at=at or timezone.now(), **changes)
        if count:
            stream.tasks_changed(changed)
        return count


class Task(models.Model):
    class Action(models.TextChoices):
        IMAGINE = "imagine", "Imagine"
        REROLL = "reroll", "Reroll"
        VARY = "vary", "Vary"
        UPSCALE = "upscale", "Upscale"
        PAN = "pan", "Pan"
        ZOOM = "zoom", "Zoom"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # saved here, upstream call waiting in our queue
        SUBMITTING = "submitting", "Submitting"  # a worker is calling Apiframe right now
        PENDING = "pending", "Waiting"  # Apiframe has it (pending, staged, starting, retrying, ...)
        PROCESSING = "processing", "Processing"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"

    # Progress order: an update may only move a task to a higher rank (or raise its percentage).
    RANK: ClassVar[dict[str, int]] = {
        Status.QUEUED: 0,
        Status.SUBMITTING: 1,
        Status.PENDING: 2,
        Status.PROCESSING: 3,
        Status.TIMED_OUT: 8,
        Status.FAILED: 9,
        Status.FINISHED: 9,
    }
    IN_FLIGHT: ClassVar[tuple[str, ...]] = (Status.QUEUED, Status.SUBMITTING, Status.PENDING, Status.PROCESSING)
    FAILED_STATUSES: ClassVar[tuple[str, ...]] = (Status.FAILED, Status.TIMED_OUT)  # ended without images; Retry
    GRID_ACTIONS: ClassVar[tuple[str, ...]] = (Action.IMAGINE, Action.REROLL, Action.VARY, Action.PAN, Action.ZOOM)

    team = models.ForeignKey(Team, models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, models.CASCADE, related_name="tasks")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="tasks")
    action = models.CharField(max_length=10, choices=Action)
    # The action's option: strong/subtle, subtle/creative, up/down/left/right, or the zoom factor ("1" = square).
    option = models.CharField(max_length=10, blank=True)
    parent = models.ForeignKey("self", models.PROTECT, null=True, blank=True, related_name="children")
    parent_index = models.PositiveSmallIntegerField(null=True, blank=True)
    root = models.ForeignKey("self", models.PROTECT, null=True, blank=True, related_name="descendants")
    apiframe_task_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # Set from the form, so a double click or a retried POST finds the task it already made.
    # Chosen in the composer: this task's images join that collection when they arrive.
    collection = models.ForeignKey(
        "Collection", models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    idempotency_key = models.UUIDField(null=True, blank=True, editable=False)

    status = models.CharField(max_length=12, choices=Status, default=Status.QUEUED)
    upstream_status = models.CharField(max_length=20, blank=True)
    percentage = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    credits = models.PositiveSmallIntegerField(default=0)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # When the fair queue gave it one of the account's APIFRAME_CONCURRENCY slots (services/queue.py): its wait
    # ends here, its deadline starts here. Still queued without it: waiting our turn, with `queue_position`.
    dispatched_at = models.DateTimeField(null=True, blank=True, editable=False)
    # 1 = next to be sent, among every team's waiting tasks; kept by the dispatcher, which bumps `updated_at`
    # when it changes so that the card shows it live. None once sent, or while the team's queue is paused.
    queue_position = models.PositiveIntegerField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField()
    # Bumped by every visible change; the studio's live refresh asks "what changed since?".
    updated_at = models.DateTimeField(default=timezone.now)
    # When Apiframe last told us anything about this task (webhook or fetch); the poller looks at it.
    last_heard_at = models.DateTimeField(null=True, blank=True)

    # Moderation (services/moderation.py owns these writes; every change is audited).
    # When the oldest open flag was raised: set by the first flag, cleared with the flags; the review queue.
    flagged_at = models.DateTimeField(null=True, blank=True, editable=False)
    hidden_at = models.DateTimeField(null=True, blank=True, editable=False)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    hidden_reason = models.CharField(max_length=300, blank=True, editable=False)

    objects = TaskQuerySet.as_manager()

    class Meta:
        indexes = [
            # The studio and history: a team's tasks, newest first.
            models.Index(fields=("team", "-created_at"), name="task_team_recent"),
            # Live refresh: a team's tasks changed since a moment.
            models.Index(fields=("team", "updated_at"), name="task_team_updated"),
            # The per-user submission rate (services/limits.py): a user's newest tasks since a moment.
            models.Index(fields=("created_by", "-created_at"), name="task_user_recent"),
            # The admin's refusals per member (admin.MembershipAdmin): a member's failed tasks in one team.
            models.Index(fields=("created_by", "team", "status"), name="task_user_team_status"),
            # The team's cap on tasks in flight (services/limits.py: count and first deadline, from the index
            # alone) and the studio's "anything of this team in flight?" (views.studio.team_is_busy, on every page
            # and pulse: four probes), however many tasks the team has finished. Not a partial index:
            # SQLite cannot match one against a bound `status IN (?, ...)`.
            models.Index(fields=("team", "status", "deadline"), name="task_team_status"),
            # The usage page (services/usage.py): a team's tasks of the last 30 days grouped by day, member and
            # action, and by lineage, read from the index alone (no table row per task).
            models.Index(
                fields=("team", "created_at", "created_by", "action", "status", "credits", "root"),
                name="task_team_usage",
            ),
            # The usage page's lineages active in the last day or two, summed over the month: from the index alone,
            # a few rows per lineage, whatever the planner knows of the table.
            models.Index(fields=("root", "team", "created_at", "credits"), name="task_root_usage"),
            # The poller (services/polling.py): quiet tasks in flight, by status and when we last heard of them;
            # and the deadline sweep: tasks in flight past their deadline. Plain, not partial, indexes: SQLite
            # cannot match a partial index's `status IN (...)` against a bound `status IN (?, ...)`.
            models.Index(fields=("status", "last_heard_at"), name="task_status_heard"),
            models.Index(fields=("status", "deadline"), name="task_status_deadline"),
            # The usage page's median wait per member (services/usage.py): a team's tasks of the last 30 days
            # with when each left the queue, from the index alone.
            models.Index(fields=("team", "created_at", "created_by", "dispatched_at"), name="task_team_waits"),
            # The review queue: flagged tasks, oldest flag first (a partial index: few rows, never bound params).
            models.Index(fields=("flagged_at",), name="task_flagged", condition=Q(flagged_at__isnull=False)),
            # The moderation page's "Hidden" tab and the admin's "moderation: hidden" filter (few rows).
            models.Index(fields=("hidden_at",), name="task_hidden", condition=Q(hidden_at__isnull=False)),
        ]
        constraints = [
            # A key means one request on one parent in one team: reused elsewhere it makes a new task, never
            # answers with another one. Two conditions because NULL parents (imagine) would never collide.
            models.UniqueConstraint(
                fields=("created_by", "team", "parent", "idempotency_key"),
                condition=Q(parent__isnull=False),
                name="task_idempotency_key_per_parent",
            ),
            models.UniqueConstraint(
                fields=("created_by", "team", "idempotency_key"),
                condition=Q(parent__isnull=True),
                name="task_idempotency_key_per_root",
            ),
            models.CheckConstraint(
                condition=Q(parent_index__isnull=True) | Q(parent_index__gte=1, parent_index__lte=4),
                name="task_parent_index_1_to_4",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.describe()}"

    def get_absolute_url(self) -> str:
        return reverse("generations:task_detail", args=[self.pk])

    @property
    def is_in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT

    @property
    def is_grid(self) -> bool:
        return self.action in self.GRID_ACTIONS

    @property
    def is_waiting(self) -> bool:
        """Waiting its turn in the fair queue (services/queue.py): not given one of the account's slots yet."""
        return self.status == self.Status.QUEUED and self.dispatched_at is None

    @property
    def images_ready(self) -> bool:
        """Finished with every image saved: only then are its images offered for actions (a card that
        changes again would close a menu opened on it)."""
        images = self.images.all()
        return self.status == self.Status.FINISHED and bool(images) and all(i.is_mirrored for i in images)

    @property
    def is_hidden(self) -> bool:
        return self.hidden_at is not None

    @property
    def can_retry(self) -> bool:
        return self.status in self.FAILED_STATUSES

    def describe(self) -> str:
        """What this task did, in the words of its lineage line: "Pan right of image 3"."""
        return actions.describe(self.action, self.option, self.parent_index) or self.get_action_display()


class ImageQuerySet(models.QuerySet["Image"]):
    def visible_to(self, user: object) -> ImageQuerySet:
        """Hidden images, and the images of hidden tasks, are gone for everyone but staff."""
        if getattr(user, "is_staff", False):
            return self
        return self.filter(hidden_at=None, task__hidden_at=None)

    def mirror_pending(self) -> ImageQuerySet:
        """Images still being saved: not stored yet, and their mirror has not given up (`Image.mirror_gave_up`)."""
        return self.filter(mirrored_at=None, mirror_attempts__lt=Image.MIRROR_MAX_ATTEMPTS)

    def mirror_gave_up(self) -> ImageQuerySet:
        """Images never stored whose mirror spent all its attempts (`Image.mirror_gave_up`): stuck work."""
        return self.filter(mirrored_at=None, mirror_attempts__gte=Image.MIRROR_MAX_ATTEMPTS)


class Image(models.Model):
    MIRROR_MAX_ATTEMPTS = 8  # backing off 2 s, 4 s ... 128 s between tries: about four minutes in all

    task = models.ForeignKey(Task, models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()  # 1-4 in a grid; 1 for an upscale
    source_url = models.URLField(max_length=1000)
    # Stored under unguessable names; served only through a view that checks the team.
    file = models.FileField(upload_to="images/", blank=True)
    thumbnail = models.FileField(upload_to="thumbs/", blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveIntegerField(null=True, blank=True)
    # Counted when a worker claims the image, so duplicate jobs never pass the cap; a permanent error (a
    # refused host, a redirect, not an image) spends them all at once: no further try could help.
    mirror_attempts = models.PositiveSmallIntegerField(default=0)
    mirror_error = models.CharField(max_length=300, blank=True)
    # When the next try is due: after a backoff, or when a claiming worker's time is up (it died). Nobody
    # claims the image before then; the poller re-queues it if that moment passes unnoticed.
    mirror_next_at = models.DateTimeField(null=True, blank=True)
    # The job queued to retry it, so the poller does not queue another while that one still waits.
    mirror_job_id = models.CharField(max_length=64, blank=True, editable=False)
    mirrored_at = models.DateTimeField(null=True, blank=True)

    # Moderation (services/moderation.py owns these writes; every change is audited).
    # When the oldest open flag was raised: set by the first flag, cleared with the flags; the review queue.
    flagged_at = models.DateTimeField(null=True, blank=True, editable=False)
    hidden_at = models.DateTimeField(null=True, blank=True, editable=False)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    hidden_reason = models.CharField(max_length=300, blank=True, editable=False)

    class Review(models.TextChoices):
        NONE = "", "Not reviewed"
        SHORTLISTED = "shortlisted", "Shortlisted"  # any member
        APPROVED = "approved", "Approved"  # owners only
        REJECTED = "rejected", "Rejected"  # owners only

    review_state = models.CharField(max_length=12, choices=Review, default=Review.NONE, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ("task", "index")
        constraints = [models.UniqueConstraint(fields=("task", "index"), name="image_task_index_unique")]
        indexes = [
            # The mirror sweep: images still waiting for their file.
            models.Index(fields=("mirrored_at",), name="image_not_mirrored", condition=Q(mirrored_at=None)),
            # The studio's "an image of this team still being saved?" (views.studio.team_is_busy): the images
            # whose mirror still tries (attempts < 8), never the ones that gave up, which pile up over the years.
            models.Index(
                fields=("mirrored_at", "mirror_attempts"), name="image_mirror_pending", condition=Q(mirrored_at=None)
            ),
            # The review queue: flagged images, oldest flag first.
            models.Index(fields=("flagged_at",), name="image_flagged", condition=Q(flagged_at__isnull=False)),
            # The moderation page's "Hidden" tab and the admin's "moderation: hidden" filter (few rows).
            models.Index(fields=("hidden_at",), name="image_hidden", condition=Q(hidden_at__isnull=False)),
            # The library's review filter (library/queries.py, _select_review) and the admin's.
            models.Index(fields=("review_state", "task"), name="image_review_state"),
        ]

    def __str__(self) -> str:
        return f"Image {self.index} of task {self.task_id}"

    @property
    def is_mirrored(self) -> bool:
        return self.mirrored_at is not None

    @property
    def is_hidden(self) -> bool:
        return self.hidden_at is not None

    @property
    def mirror_gave_up(self) -> bool:
        return not self.is_mirrored and self.mirror_attempts >= self.MIRROR_MAX_ATTEMPTS


class Favourite(models.Model):
    """An image a user starred: per user, not shared with the team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="favourites")
    image = models.ForeignKey(Image, models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("user", "image"), name="favourite_unique")]

    def __str__(self) -> str:
        return f"{self.user} ★ image {self.image_id}"


class Collection(models.Model):
    """A named set of the team's images (a board): any member creates, renames and fills one."""

    MAX_NAME_LENGTH = 80

    team = models.ForeignKey(Team, models.CASCADE, related_name="collections")
    name = models.CharField(max_length=MAX_NAME_LENGTH)
    # The name case-folded ("Moodboard" = "MOODBOARD", "Straße" = "STRASSE"): unique per team in any database
    # (SQLite's lower() knows ASCII only). Set by save(); folding may lengthen a name, hence the room.
    name_key = models.CharField(max_length=MAX_NAME_LENGTH * 3, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="collections")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    images = models.ManyToManyField(Image, through="CollectionItem", related_name="collections")

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("team", "name_key"), name="collection_team_name_key_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        self.name_key = self.key_for(self.name)
        if (fields := kwargs.get("update_fields")) is not None and "name" in fields:
            kwargs["update_fields"] = {*fields, "name_key"}
        super().save(*args, **kwargs)

    @staticmethod
    def key_for(name: str) -> str:
        """What two names must not share within a team: the same letters, whatever their case or form."""
        return unicodedata.normalize("NFKC", name).casefold()


class CollectionItem(models.Model):
    collection = models.ForeignKey(Collection, models.CASCADE, related_name="items")
    image = models.ForeignKey(Image, models.CASCADE, related_name="collection_items")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("collection", "image"), name="collection_item_unique")]
        indexes = [
            # Browsing a collection: its images, most recently added first.
            models.Index(fields=("collection", "-added_at"), name="collection_item_recent"),
        ]

    def __str__(self) -> str:
        return f"image {self.image_id} in {self.collection_id}"


class WebhookDelivery(models.Model):
    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        STALE = "stale", "Duplicate or out of date"
        UNKNOWN_TASK = "unknown_task", "Unknown task"
        INVALID = "invalid", "Invalid payload"

    received_at = models.DateTimeField(default=timezone.now)
    apiframe_task_id = models.CharField(max_length=64, blank=True)
    task = models.ForeignKey(Task, models.SET_NULL, null=True, blank=True, related_name="webhook_deliveries")
    reported_status = models.CharField(max_length=20, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome)
    body = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The admin's webhook log, newest first.
            models.Index(fields=("-received_at",), name="webhook_recent"),
            # After a submit: the deliveries that arrived for this task before we knew its id.
            models.Index(fields=("apiframe_task_id", "outcome"), name="webhook_task_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.apiframe_task_id or '?'} {self.reported_status} ({self.outcome})"


class Chore(models.Model):
    """When a periodic chore of the poller (pruning, sweeping files) last ran: kept across restarts, and
    claimed with a conditional update, so two pollers never both run it."""

    name = models.CharField(max_length=40, unique=True)
    last_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_run_at}"


class Flag(models.Model):
    """A member's report of an image or a task (exactly one), open until a moderator clears it (or hides the item)."""

    class Reason(models.TextChoices):
        SEXUAL = "sexual", "Sexual or nudity"
        VIOLENCE = "violence", "Violence or gore"
        HATEFUL = "hateful", "Hateful or harassing"
        REAL_PERSON = "real_person", "Depicts a real person"
        COPYRIGHT = "copyright", "Copyright or trademark"
        OFF_BRIEF = "off_brief", "Off-brief or spam"
        OTHER = "other", "Other"

    NOTE_MAX_LENGTH = 500

    team = models.ForeignKey(Team, models.CASCADE, related_name="flags")
    image = models.ForeignKey(Image, models.CASCADE, null=True, blank=True, related_name="flags")
    task = models.ForeignKey(Task, models.CASCADE, null=True, blank=True, related_name="flags")
    reason = models.CharField(max_length=12, choices=Reason)
    note = models.CharField(max_length=NOTE_MAX_LENGTH, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="flags")
    created_at = models.DateTimeField(default=timezone.now)
    # Set when a moderator clears the flag or hides the item: it leaves the queue, and stays as history.
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(image__isnull=False, task__isnull=True) | Q(image__isnull=True, task__isnull=False),
                name="flag_image_or_task",
            ),
            # A member flags an item once until a moderator deals with it: a second click (or a race) adds nothing.
            models.UniqueConstraint(
                fields=("image", "created_by"),
                condition=Q(resolved_at=None, image__isnull=False),
                name="flag_image_open_once",
            ),
            models.UniqueConstraint(
                fields=("task", "created_by"),
                condition=Q(resolved_at=None, task__isnull=False),
                name="flag_task_open_once",
            ),
        ]
        indexes = [
            models.Index(fields=("image", "resolved_at"), name="flag_image_open"),
            models.Index(fields=("task", "resolved_at"), name="flag_task_open"),
            models.Index(fields=("team", "resolved_at", "created_at"), name="flag_team_open"),
        ]

    def __str__(self) -> str:
        target = f"image {self.image_id}" if self.image_id else f"task {self.task_id}"
        return f"{self.get_reason_display()} on {target}"


class BlockedTerm(models.Model):
    """A word, phrase or regular expression that no prompt may send upstream: a team's own (owners edit it on
    the site) or site-wide (team empty; staff edit it in the admin). Matched case- and accent-insensitively,
    as whole words (services/blocklist.py)."""

    MAX_LENGTH = blockmatch.TERM_MAX_LENGTH  # the form's limit is the matcher's

    team = models.ForeignKey(Team, models.CASCADE, null=True, blank=True, related_name="blocked_terms")
    text = models.CharField(max_length=MAX_LENGTH)
    is_regex = models.BooleanField(
        default=False,
        help_text="An RE2 regular expression (no backreferences or lookarounds), searched in the prompt without "
        "accents, ignoring case. Not whole-word unless you write \\b.",
    )
    # What makes two terms one (blockmatch.term_key: "Cà Phê" and "ca  phe" are): unique per list, so that
    # simultaneous adds of one term make one row. Set by save().
    key = models.CharField(max_length=blockmatch.TERM_KEY_MAX_LENGTH, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Counts edits: with the row count and the newest id it tells every process its compiled terms are stale.
    revision = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ("text",)
        constraints = [
            # A team's list and the site's (team NULL, which a plain unique constraint would let repeat).
            models.UniqueConstraint(
                fields=("team", "key"), condition=Q(team__isnull=False), name="blocked_term_team_key_unique"
            ),
            models.UniqueConstraint(
                fields=("key",), condition=Q(team__isnull=True), name="blocked_term_site_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.text}/" if self.is_regex else self.text

    def save(self, *args: object, **kwargs: object) -> None:
        self.key = blockmatch.term_key(self.text, is_regex=self.is_regex)
        if (fields := kwargs.get("update_fields")) is not None and {"text", "is_regex"} & set(fields):
            kwargs["update_fields"] = {*fields, "key"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if problem := blockmatch.term_problem(self.text, is_regex=self.is_regex):
            raise ValidationError({"text": problem})


class AuditEntry(models.Model):
    """Who did what to what, when and why: one row per moderation or operations act. Written by the services
    only; read-only in the admin."""

    class Act(models.TextChoices):
        FLAG = "flag", "Flagged"
        HIDE = "hide", "Hid"
        RESTORE = "restore", "Restored"
        CLEAR_FLAGS = "clear_flags", "Cleared flags"
        REVIEW = "review", "Reviewed"
        BLOCKLIST_ADD = "blocklist_add", "Added a blocked term"
        BLOCKLIST_CHANGE = "blocklist_change", "Changed a blocked term"
        BLOCKLIST_REMOVE = "blocklist_remove", "Removed a blocked term"
        PROMPT_BLOCKED = "prompt_blocked", "Prompt refused by the blocklist"
        ROLE_CHANGE = "role_change", "Changed a role"
        MEMBER_ADD = "member_add", "Added a member"
        MEMBER_REMOVE = "member_remove", "Removed a member"
        MEMBER_LEAVE = "member_leave", "Left a team"
        INVITE = "invite", "Invited someone"
        INVITE_WITHDRAW = "invite_withdraw", "Withdrew an invitation"
        INVITE_ACCEPT = "invite_accept", "Accepted an invitation"
        INVITE_DECLINE = "invite_decline", "Declined an invitation"
        QUEUE_PAUSE = "queue_pause", "Paused the queue"
        QUEUE_RESUME = "queue_resume", "Resumed the queue"
        TASK_REFRESH = "task_refresh", "Refreshed from Apiframe"
        TASK_FAIL = "task_fail", "Failed a task"
        MIRROR_RETRY = "mirror_retry", "Retried a mirror"
        WEBHOOK_REPLAY = "webhook_replay", "Replayed a webhook delivery"

    created_at = models.DateTimeField(default=timezone.now)
    # Kept when the user or team is deleted: the name as it was stays in `actor_name`.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(Team, models.SET_NULL, null=True, blank=True, related_name="+")
    act = models.CharField(max_length=20, choices=Act)
    # What it was done to: a model's name and primary key, and how it read at the time.
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.BigIntegerField(null=True, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ("-created_at", "-pk")
        indexes = [
            models.Index(fields=("-created_at",), name="audit_recent"),
            models.Index(fields=("team", "-created_at"), name="audit_team_recent"),
            models.Index(fields=("act", "-created_at"), name="audit_act_recent"),
            models.Index(fields=("target_type", "target_id"), name="audit_target"),
            # The submit rate (services/limits.py): a user's prompts the blocklist refused in the window.
            models.Index(fields=("actor", "act", "-created_at"), name="audit_actor_act_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'}: {self.get_act_display()} {self.target_repr}".strip()


class StuckTask(Task):
    """Tasks that need a hand (services/operations.tasks_stuck): the admin's stuck-work list, with its actions."""

    class Meta:
        proxy = True
        verbose_name = "stuck task"
