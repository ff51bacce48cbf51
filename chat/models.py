"""Conversations and messages. A reply's state machine lives here.

A reply moves ``pending -> streaming -> complete | cancelled | error | interrupted``
(``pending`` may end directly too). Only the functions in ``chat.services`` change it,
each through ``Message.objects.transition``, a conditional UPDATE that loses cleanly to
a concurrent change instead of overwriting it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    @property
    def model_choice(self) -> str:
        return f"{self.provider}/{self.model}"


class MessageQuerySet(models.QuerySet["Message"]):
    def active(self) -> MessageQuerySet:
        return self.filter(status__in=Message.ACTIVE)

    def transition(self, pk: int, to: str, **fields: Any) -> bool:
        """Move one reply to ``to`` if its current status allows it; False if it did not."""
        allowed_from = [s for s, targets in Message.TRANSITIONS.items() if to in targets]
        return bool(
            self.filter(pk=pk, status__in=allowed_from).update(
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

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
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
