"""Share links: the owner's list, making and revoking links, the shared page, continuing it.

The shared page needs no login and shows the snapshot only (``chat.shares``). It loads
no socket, asks search engines not to index it, and sends no referrer, so the token in
its address goes nowhere a link on it leads.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import broadcast, shares
from chat.models import Conversation, Message, ShareLink


def _links_page(request: HttpRequest, conversation: Conversation, new_url: str = "") -> HttpResponse:
    context = {
        "conversation": conversation,
        "links": conversation.share_links.all(),
        "writing": Message.objects.active().filter(conversation=conversation).exists(),
        "new_url": new_url,
    }
    response = render(request, "chat/share_links.html", context)
    # The one page that ever shows a token.
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def share_links(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    return _links_page(request, conversation)


@require_POST
def make_share_link(request: HttpRequest, pk: int) -> HttpResponse:
    """Answered with the list itself, not a redirect: the token is shown this once."""
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    include = request.POST.get("include_system_prompt") == "on"
    _, token = shares.do_make_link(conversation, include_system_prompt=include)
    url = request.build_absolute_uri(reverse("chat:shared", args=[token]))
    return _links_page(request, conversation, url)


@require_POST
def revoke_share_link(request: HttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(ShareLink, pk=pk, conversation__owner=request.user)
    shares.do_revoke(ShareLink.objects.filter(pk=link.pk))
    flash.success(request, "The link is revoked: it now answers “not found”.")
    return redirect("chat:share_links", pk=link.conversation_id)


def _live_link(token: str) -> ShareLink:
    link = shares.find(token)
    if link is None:
        raise Http404("No such link.")
    return link


def _unlisted(response: HttpResponse) -> HttpResponse:
    """A page whose address holds a token: never indexed, never kept in a cache (a revoked
    link must not live on there)."""
    response["X-Robots-Tag"] = "noindex"
    response["Cache-Control"] = "private, no-store"
    return response


@login_not_required
@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    link = _live_link(token)
    response = render(request, "chat/shared.html", {"snapshot": link.snapshot, "token": token})
    response["Referrer-Policy"] = "no-referrer"
    return _unlisted(response)


@require_http_methods(["GET", "POST"])
def continue_shared(request: HttpRequest, token: str) -> HttpResponse:
    """Asked on a page of its own: under the shared page's no-referrer policy a browser
    sends a form's Origin as "null", which the CSRF check rightly refuses. Logged out,
    both go to log in first (``LoginRequiredMiddleware``) and come back here."""
    link = _live_link(token)
    if request.method == "GET":
        return _unlisted(
            render(request, "chat/continue_shared.html", {"snapshot": link.snapshot, "token": token})
        )
    conversation = shares.do_continue(link, request.user)
    async_to_sync(broadcast.sidebar_changed)(request.user.pk)
    return redirect("chat:conversation", pk=conversation.pk)
