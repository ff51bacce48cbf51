"""The Import page: a file of conversations in, the importer's own conversations out."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_http_methods

from chat import broadcast, imports
from chat.checks import ChatError
from chat.imports import Imported

# Room for the multipart framing around one file.
FORM_OVERHEAD = 64 * 1024


def too_big() -> str:
    return f"That file is over {filesizeformat(settings.CHAT_MAX_IMPORT_BYTES)}, the limit for an import."


def _page(
    request: HttpRequest, *, imported: Imported | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "imported": imported,
        "error": error,
        "limit": settings.CHAT_MAX_IMPORT_BYTES,
        "too_big": too_big(),
    }
    return render(request, "chat/import.html", context, status=status)


@require_http_methods(["GET", "POST"])
def import_conversations(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request)
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.CHAT_MAX_IMPORT_BYTES + FORM_OVERHEAD:
        # Refused before the form is parsed.
        return _page(request, error=too_big(), status=413)
    if (file := request.FILES.get("file")) is None:
        return _page(request, error="Choose a file to import.", status=400)
    if file.size > settings.CHAT_MAX_IMPORT_BYTES:
        return _page(request, error=too_big(), status=413)
    try:
        imported = imports.do_import(request.user, file.read())
    except ChatError as exc:
        return _page(request, error=str(exc), status=400)
    async_to_sync(broadcast.sidebar_changed)(request.user.pk)
    return _page(request, imported=imported)
