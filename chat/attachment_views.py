"""Attachments over HTTP: an upload for the next message, and the file to its owner."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from chat import attachments
from chat.checks import ChatError
from chat.models import Attachment

# Room for the multipart framing around one file.
FORM_OVERHEAD = 64 * 1024


def _refused(reason: str, status: int = 400) -> HttpResponse:
    return HttpResponse(reason, status=status, content_type="text/plain; charset=utf-8")


@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    """One file, checked and stored: answered with its chip for the composer, or a sentence."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.CHAT_MAX_UPLOAD_BYTES + FORM_OVERHEAD:
        # Refused before the form is parsed (the server has the body already: a proxy's
        # body limit, see README, stops a huge one before it reaches a worker).
        limit = settings.CHAT_MAX_UPLOAD_BYTES / 1_048_576
        return _refused(f"That file is over {limit:.1f} MB, the limit.", status=413)
    if (file := request.FILES.get("file")) is None:
        return _refused("Choose a file to attach.")
    try:
        attachment = attachments.do_upload(request.user.pk, file)
    except ChatError as exc:
        return _refused(str(exc))
    return render(request, "chat/_attachment.html", {"file": attachments.summary(attachment)})


@require_GET
def download(request: HttpRequest, key: str) -> FileResponse:
    """A file, to its owner only: anyone else is told it does not exist."""
    return serve(get_object_or_404(Attachment, key=key, owner=request.user))


@login_not_required
@require_GET
def signed(request: HttpRequest, token: str) -> FileResponse:
    """An image for an upstream that fetches images by address (MuAPI), while its
    signature lasts (``CHAT_SIGNED_URL_MAX_AGE``)."""
    key = attachments.key_from_signature(token)
    return serve(get_object_or_404(Attachment, key=key or "", kind=Attachment.Kind.IMAGE))


def serve(attachment: Attachment) -> FileResponse:
    """Inline for an image, a download for a document; never HTML, never sniffed."""
    response = FileResponse(
        attachment.file.open("rb"),
        content_type=attachment.content_type,
        as_attachment=attachment.kind != Attachment.Kind.IMAGE,
        filename=attachment.name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
