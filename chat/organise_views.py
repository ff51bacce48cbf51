"""Views for pins, the archive and folders (``chat.organise``).

The sidebar's forms post with htmx and get the sidebar back, drawn for the page that
asked; every other page of the person redraws it from the broadcast. Without htmx (the
archived page's forms) a post goes back where it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve
from django.views.decorators.http import require_GET, require_POST

from chat import broadcast, organise, rendering, sidebar
from chat.checks import ChatError
from chat.models import Conversation, Folder
from chat.views import back_or_home


@require_POST
def pin(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    return _answer(request, lambda: organise.do_pin(conversation, request.POST.get("pinned") == "1"))


@require_POST
def archive(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    return _answer(request, lambda: organise.do_archive(conversation, request.POST.get("archived") == "1"))


@require_POST
def move(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    folder = _own_folder_or_none(request, request.POST.get("folder", ""))
    return _answer(request, lambda: organise.do_move(conversation, folder))


@require_POST
def new_folder(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    return _answer(request, lambda: organise.do_create_folder(request.user.pk, name), typed=name)


@require_POST
def rename_folder(request: HttpRequest, pk: int) -> HttpResponse:
    folder = get_object_or_404(Folder, pk=pk, owner=request.user)
    return _answer(request, lambda: organise.do_rename_folder(folder, request.POST.get("name", "")))


@require_POST
def delete_folder(request: HttpRequest, pk: int) -> HttpResponse:
    folder = get_object_or_404(Folder, pk=pk, owner=request.user)
    return _answer(request, lambda: organise.do_delete_folder(folder))


@require_GET
def archived(request: HttpRequest) -> HttpResponse:
    page = sidebar.archived_page(request.user.pk, request.GET.get("page"))
    return render(request, "chat/conversation_index.html", {"page": page, "archived": True})


@require_GET
def folder(request: HttpRequest, pk: int) -> HttpResponse:
    folder = get_object_or_404(Folder, pk=pk, owner=request.user)
    page = sidebar.folder_page(folder, request.GET.get("page"))
    return render(request, "chat/conversation_index.html", {"page": page, "folder": folder})


def _own_folder_or_none(request: HttpRequest, value: str) -> Folder | None:
    """No folder for an empty value; another person's, or none at all, is a 404."""
    if not value:
        return None
    if not value.isdigit():
        raise Http404
    return get_object_or_404(Folder, pk=value, owner=request.user)


def _answer(request: HttpRequest, change: Callable[[], object], typed: str = "") -> HttpResponse:
    """Make the change and tell every page; a refused change is said where it was asked,
    with what the person typed kept."""
    try:
        change()
    except ChatError as exc:
        error = str(exc)
    else:
        error, typed = "", ""
        async_to_sync(broadcast.sidebar_changed)(request.user.pk)
    if not request.htmx:
        if error:
            flash.error(request, error)
        return redirect(back_or_home(request))
    shown = sidebar.load(request.user.pk)
    return HttpResponse(rendering.sidebar_html(shown, _current(request), error=error, typed=typed))


def _current(request: HttpRequest) -> Conversation | None:
    """The conversation of the page that asked, for the sidebar to mark."""
    try:
        match = resolve(urlsplit(request.htmx.current_url or "").path)
    except Resolver404:
        return None
    if match.view_name != "chat:conversation":
        return None
    pk = match.kwargs["pk"]
    return sidebar.current(request.user.pk, pk)
