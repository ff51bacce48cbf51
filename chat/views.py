"""Thin function views: HTTP in, a service call, a template out."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from chat import rendering, services
from chat.models import Conversation, Message
from chat.providers.config import choices


def home(request: HttpRequest) -> HttpResponse:
    conversation = request.user.conversations.first() or services.create_conversation(request.user)
    return redirect("chat:conversation", pk=conversation.pk)


@require_POST
def new_conversation(request: HttpRequest) -> HttpResponse:
    conversation = services.create_conversation(request.user)
    return redirect("chat:conversation", pk=conversation.pk)


def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    # A page load is also a chance to end replies whose worker died.
    if stale := services.do_interrupt_stale_replies():
        async_to_sync(services.notify_interrupted)(stale)
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "conversations": request.user.conversations.all()[:100],
            "chat_messages": conversation.messages.all(),
            "model_choices": choices(),
            "client_id": rendering.new_client_id(),
        },
    )


@require_POST
def update_settings(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    try:
        services.do_update_settings(
            conversation, request.POST.get("model", ""), request.POST.get("system_prompt", "")
        )
    except services.ChatError as exc:
        flash.error(request, str(exc))
    return redirect("chat:conversation", pk=conversation.pk)


@require_POST
def stop_reply(request: HttpRequest, pk: int) -> HttpResponse:
    reply = get_object_or_404(Message, pk=pk, conversation__owner=request.user, role=Message.Role.ASSISTANT)
    if services.do_request_stop(reply):
        async_to_sync(services.notify_stop_requested)(reply)
    return HttpResponse(status=204)


@login_not_required
@cache_control(max_age=86400)
def pygments_css(request: HttpRequest) -> HttpResponse:
    return HttpResponse(rendering.pygments_css(), content_type="text/css")
