"""Conversations and messages. A reply's state machine lives here.

A reply moves ``pending -> streaming -> complete | cancelled | error | interrupted``
(``pending`` may end directly too). Only the functions in ``chat.services`` change it,
each through ``Message.objects.transition``, a conditional UPDATE that loses cleanly to
a concurrent change instead of overwriting it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class Folder(models.Model):
    """A person's named group of conversations in the sidebar (``chat.organise``)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = [Lower("name")]
        constraints = [
            # Also the index of the sidebar's folders, in name order.
            models.UniqueConstraint(models.F("owner"), Lower("name"), name="folder_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


def shown_title(pk: int, title: str) -> str:
    """How a conversation is named wherever it shows: its title, or its number."""
    return title or f"Conversation {pk}"


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    # Sampling parameters it sets (``chat.providers.parameters``); the rest are defaults.
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What asking the model for a title cost, apart from the replies (chat.titles).
    # Estimated: the request is closed after the title's first line.
    title_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    title_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    title_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # How its owner keeps the sidebar (chat.organise). A pinned conversation is never archived.
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Indexed by conversation_folder_recent, which also serves a folder's deletion.
    folder = models.ForeignKey(
        Folder, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations", db_index=False
    )

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            # The admin's changelist across all owners, newest first.
            models.Index(fields=["-updated_at"], name="conversation_recent"),
            # The sidebar's sections (chat.sidebar): each query walks only its own rows, so
            # thousands archived or filed away cost the plain list nothing.
            models.Index(
                fields=["owner", "-updated_at"],
                condition=models.Q(pinned_at=None, archived_at=None, folder=None),
                name="conversation_owner_plain",
            ),
            models.Index(
                fields=["owner", "-pinned_at"],
                condition=models.Q(pinned_at__isnull=False),
                name="conversation_owner_pinned",
            ),
            models.Index(
                fields=["owner", "-archived_at"],
                condition=models.Q(archived_at__isnull=False),
                name="conversation_owner_archived",
            ),
            models.Index(fields=["folder", "-updated_at"], name="conversation_folder_recent"),
        ]

    def __str__(self) -> str:
        return shown_title(self.pk, self.title)

    @property
    def model_choice(self) -> str:
        return f"{self.provider}/{self.model}"


class MessageQuerySet(models.QuerySet["Message"]):
    def active(self) -> MessageQuerySet:
        return self.filter(status__in=Message.ACTIVE)

    def transition(self, pk: int, to: str, **fields: Any) -> bool:
        """Move one reply to ``to`` if its current status allows it; False if it did not."""
        return bool(
            self.filter(pk=pk, status__in=Message.statuses_before(to)).update(
                status=to, updated_at=timezone.now(), **fields
            )
        )


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    ENDINGS = {Status.COMPLETE, Status.CANCELLED, Status.ERROR, Status.INTERRUPTED}
    ACTIVE = [Status.PENDING, Status.STREAMING]
    TRANSITIONS = {
        Status.PENDING: {Status.STREAMING, *ENDINGS},
        Status.STREAMING: ENDINGS,
    }

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # The message this one follows (a reply's parent is the message it answers). Siblings
    # are versions of one turn: a regenerated reply, an edited message (see chat.branches).
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    # Of a set of versions the page shows the one chosen last.
    selected_at = models.DateTimeField(default=timezone.now)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # What its page shows of its attachments (``chat.attachments.summary``), so drawing a
    # message never asks the database; the files themselves are ``files``.
    attachments = models.JSONField(default=list, blank=True)
    # What a reasoning model showed of its thinking, apart from the answer: never sent
    # back to the model as history. ``reasoning_ms``: how long it thought.
    reasoning = models.TextField(blank=True)
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=50, blank=True)
    # The sampling parameters a reply was asked with: the conversation's over the defaults.
    parameters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Of the output tokens, those spent thinking, where the upstream says.
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    # Idempotency key from the page, so a double-submitted message is stored once.
    client_id = models.CharField(max_length=64, blank=True)
    # The channel of the worker process that runs this reply: Stop is sent there.
    worker_channel = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    # Why, when it was not the person's own Stop (they were signed out, say).
    stop_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
            models.Index(fields=["status", "heartbeat_at"], name="message_status_heartbeat"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="message_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def dom_id(self) -> str:
        # An id must not start with a digit: htmx passes it to querySelector.
        return f"message-{self.pk}"

    @property
    def can_be_rated(self) -> bool:
        """A finished reply: complete, or ended another way with text to judge."""
        if self.role != self.Role.ASSISTANT or self.status not in self.ENDINGS:
            return False
        return self.status == self.Status.COMPLETE or bool(self.content)

    @staticmethod
    def statuses_before(to: str) -> list[str]:
        """The statuses a reply may move to ``to`` from."""
        return [status for status, targets in Message.TRANSITIONS.items() if to in targets]


def _attachment_path(attachment: Attachment, filename: str) -> str:
    # A random name: nothing of the person's file name reaches the file system.
    return f"attachments/{attachment.key[:2]}/{filename}"


class Attachment(models.Model):
    """A file a person attached to a message (``chat.attachments``), or uploaded for their
    next one (``message`` empty). ``key`` is what its URL carries: random, unguessable."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document"

    key = models.CharField(max_length=64, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="files"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    file = models.FileField(upload_to=_attachment_path, max_length=200)
    # A document's text, as the prompt carries it, and about how many tokens that is.
    text = models.TextField(blank=True)
    tokens = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Uploads never sent, for the retention command to remove.
            models.Index(fields=["message", "created_at"], name="attachment_unsent"),
        ]

    def __str__(self) -> str:
        return self.name


class Feedback(models.Model):
    """A person's thumbs up or down on a reply, with an optional comment (``chat.feedback``).

    One per person per reply, and only the conversation's owner may give it.
    """

    class Rating(models.TextChoices):
        UP = "up", "thumbs up"
        DOWN = "down", "thumbs down"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.CharField(max_length=8, choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name_plural = "feedback"
        indexes = [models.Index(fields=["-updated_at"], name="feedback_recent")]
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="feedback_one_per_person_per_reply")
        ]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on reply {self.message_id}"


class UsageBudget(models.Model):
    """A person's daily allowance, set by an admin; a reply that would start past it is refused."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_budget"
    )
    daily_token_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Input plus output tokens per day; empty for no limit."
    )
    daily_cost_limit = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Dollars per day; empty for no limit.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Budget of {self.user}"


class TranscriptAccess(models.Model):
    """One time a member of staff read or exported a conversation.

    Names are copied, so the record outlives the conversation and the staff account.
    """

    class Action(models.TextChoices):
        READ = "read"
        EXPORT = "export"

    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    viewer_username = models.CharField(max_length=150)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, related_name="accesses"
    )
    conversation_label = models.CharField(max_length=300)
    owner_username = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.READ)
    accessed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-accessed_at", "-pk"]
        verbose_name_plural = "transcript accesses"
        indexes = [
            models.Index(fields=["-accessed_at"], name="access_recent"),
            models.Index(fields=["conversation", "-accessed_at"], name="access_conversation_recent"),
        ]
        # The permission that guards message text in the admin lives here, beside its audit trail.
        permissions = [("view_transcript", "Can read and export conversation transcripts")]

    def __str__(self) -> str:
        return f"{self.viewer_username} {self.action} {self.conversation_label}"


class LiveReply(Message):
    """Replies generating now on any worker, for the admin's live list and its Stop action."""

    class Meta:
        proxy = True
        verbose_name_plural = "live replies"
        permissions = [("stop_reply", "Can stop any person's reply")]


class UserSession(AbstractBaseSession):
    """A signed-in session, with the person it belongs to (``chat.sessions``): all of a
    person's sessions can be ended at once, and deleting the person ends them."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )

    @classmethod
    def get_session_store_class(cls) -> type:
        from chat.sessions import SessionStore

        return SessionStore


class SignOut(models.Model):
    """Someone's sessions ended on purpose: by themselves everywhere else, or by staff.

    Names are copied, so the record outlives both accounts; nobody can edit or delete it.
    """

    class Scope(models.TextChoices):
        OTHERS = "others", "their other sessions"
        ALL = "all", "all sessions"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_username = models.CharField(max_length=150)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    username = models.CharField(max_length=150)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    sessions = models.PositiveIntegerField(help_text="How many sessions ended.")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["-at"], name="signout_recent")]

    def __str__(self) -> str:
        return f"{self.actor_username} ended {self.get_scope_display()} of {self.username}"


class Revocation(models.Model):
    """A change that may have ended sessions of a person, written by whichever process
    made it (a worker, an admin, ``manage.py shell``). Workers poll these once a second,
    so the pages they hold learn of it even where no channel layer reaches them (see
    ``chat.access``). Kept for an hour."""

    user_id = models.IntegerField()
    # The one session it ended, when it is known (a logout): no need to check.
    session_key = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=200)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"sessions of {self.user_id}: {self.reason}"


class ShareLink(models.Model):
    """A read-only snapshot of a conversation's visible branch, opened by an unguessable token.

    Only the token's SHA-256 is stored (``chat.shares``), so a copy of the database opens
    no link; the owner sees the token once, when it is made. The snapshot is copied at
    that moment, so later messages, edits and other branches never reach it.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True)
    # {"title", "provider", "model", "system_prompt", "messages": [{"role", "content", ...}]}
    snapshot = models.JSONField()
    includes_system_prompt = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["conversation", "-created_at"], name="share_conversation_recent")]
        permissions = [("revoke_sharelink", "Can revoke any person's share link")]

    def __str__(self) -> str:
        return f"Share link {self.pk} of {self.conversation}"

    @property
    def message_count(self) -> int:
        return len(self.snapshot.get("messages", []))


class Prompt(models.Model):
    """A saved prompt of a person's, offered in the composer's slash menu (``chat.prompts``).

    Only staff publish one (in the admin); a published prompt shows in everyone's menu,
    and stays its owner's alone to edit.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompts")
    title = models.CharField(max_length=120)
    text = models.TextField()
    published = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "pk"]
        indexes = [
            models.Index(fields=["owner", "title"], name="prompt_owner_title"),
            models.Index(fields=["title"], name="prompt_published_title", condition=models.Q(published=True)),
        ]

    def __str__(self) -> str:
        return self.title
