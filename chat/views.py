"""Thin function views: HTTP in, a service call, a template out."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from chat import access, branches, broadcast, conversations, feedback, rendering, replies, sidebar
from chat.checks import ChatError
from chat.models import Conversation, Message
from chat.providers.config import choices


def home(request: HttpRequest) -> HttpResponse:
    shown = request.user.conversations.filter(archived_at=None)
    conversation = shown.first() or conversations.create_conversation(request.user)
    return redirect("chat:conversation", pk=conversation.pk)


@require_POST
def new_conversation(request: HttpRequest) -> HttpResponse:
    conversation = conversations.create_conversation(request.user)
    async_to_sync(broadcast.sidebar_changed)(request.user.pk)
    return redirect("chat:conversation", pk=conversation.pk)


def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    # A page load is also a chance to end replies whose worker died.
    if stale := replies.do_interrupt_stale_replies():
        async_to_sync(replies.interrupted)(stale)
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "sidebar": sidebar.load(request.user.pk),
            "chat_messages": branches.visible_path(conversation.pk),
            "accepts_images": rendering.model_accepts_images(conversation),
            "parameters": rendering.parameter_fields(conversation),
            "model_choices": choices(),
            "client_id": rendering.new_client_id(),
            # The socket tells the server how old this page is, so a reconnect after a
            # gap redraws what changed meanwhile.
            "rendered_at": time.time(),
        },
    )


@require_POST
def update_settings(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    try:
        conversations.do_update_settings(
            conversation, request.POST.get("model", ""), request.POST.get("system_prompt", ""), request.POST
        )
    except ChatError as exc:
        flash.error(request, str(exc))
    else:
        async_to_sync(broadcast.settings_changed)(conversation.pk)
    return redirect("chat:conversation", pk=conversation.pk)


@require_POST
def rename_conversation(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    try:
        conversations.do_rename_conversation(conversation, request.POST.get("title", ""))
    except ChatError as exc:
        flash.error(request, str(exc))
    else:
        async_to_sync(broadcast.sidebar_changed)(request.user.pk)
    return redirect("chat:conversation", pk=conversation.pk)


@require_POST
def delete_conversation(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    running = conversations.do_delete_conversation(conversation)
    async_to_sync(conversations.notify_deleted)(request.user.pk, running)
    return redirect("chat:home")


def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    found = conversations.search(request.user.pk, query)
    context = {"hits": found.hits, "total": found.total, "query": query.strip()}
    return render(request, "chat/_search_results.html", context)


@require_POST
def stop_reply(request: HttpRequest, pk: int) -> HttpResponse:
    reply = get_object_or_404(Message, pk=pk, conversation__owner=request.user, role=Message.Role.ASSISTANT)
    if reply.is_active:
        async_to_sync(replies.stop)(reply.pk, reply.conversation_id, reply.worker_channel)
    return HttpResponse(status=204)


@require_POST
def rate_reply(request: HttpRequest, pk: int) -> HttpResponse:
    """Thumbs up, down or none on a finished reply, with a comment: the feedback fragment again."""
    reply = get_object_or_404(Message, pk=pk, conversation__owner=request.user, role=Message.Role.ASSISTANT)
    comment = request.POST.get("comment", "")
    try:
        given = feedback.do_rate(reply, request.user, request.POST.get("rating", ""), comment)
    except feedback.Refused as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    except ChatError as exc:
        # Shown in the fragment with what was typed; nothing was saved.
        feedback.attach([reply])
        context = {"message": reply, "feedback": reply.feedback_given, "comment": comment, "error": str(exc)}
        return render(request, "chat/_feedback.html", context)
    return render(request, "chat/_feedback.html", {"message": reply, "feedback": given, "saved": True})


@require_GET
def message_source(request: HttpRequest, pk: int) -> HttpResponse:
    """A message's text as written: what Copy puts on the clipboard (a reply's markdown,
    not its rendering). Only its owner's; never sniffed as anything but text."""
    message = get_object_or_404(Message, pk=pk, conversation__owner=request.user)
    response = HttpResponse(message.content, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
def end_other_sessions(request: HttpRequest) -> HttpResponse:
    """Log out everywhere else: every session of the person but this one ends, and the
    pages that used them close (``chat.access``)."""
    ended = access.end_sessions(request.user, request.user, keep=request.session.session_key)
    flash.success(request, f"Signed out of {ended} other session{'' if ended == 1 else 's'}.")
    return redirect(back_or_home(request))


def back_or_home(request: HttpRequest) -> str:
    """Back to the page the form was on, when it is one of ours."""
    back = request.META.get("HTTP_REFERER", "")
    ours = url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return back if ours else "chat:home"


@login_not_required
@cache_control(max_age=86400)
def pygments_css(request: HttpRequest) -> HttpResponse:
    return HttpResponse(rendering.pygments_css(), content_type="text/css")
