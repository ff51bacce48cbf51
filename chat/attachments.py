"""Files a person attaches to a message: images and text documents.

An upload is checked, stored and shown in the composer before the message is sent; the
message then takes it (``attach``). What a file holds is read by ``chat.file_reading``:
images decoded and re-encoded by Pillow (which drops their metadata), documents read as
text. Files are stored through Django's storage API under a random name; the URL that
serves one carries an unguessable key and answers only its owner (staff read them
through the admin transcript, which logs it).

An image reaches the model as data (a base64 data URL) where the dialect takes one, so
the server never fetches a URL for it. A dialect that takes only a URL (MuAPI) gets a
signed, expiring address on ``CHAT_PUBLIC_BASE_URL``; without one, such a message is
refused.
"""

from __future__ import annotations

import base64
import math
import secrets
from pathlib import PurePath

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models.signals import post_delete
from django.urls import reverse

from chat.checks import ChatError
from chat.file_reading import IMAGE_TYPES, SAVED_AS, image_format, read_document, read_image
from chat.models import Attachment, Conversation, Message
from chat.providers import DIALECTS
from chat.providers.config import get_providers

SIGNING_SALT = "chat.attachments"


def new_key() -> str:
    return secrets.token_urlsafe(24)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def clean_name(name: str) -> str:
    """The file's own name, without any path, for showing and for the prompt. Browsers
    write a quote in a form's file name as ``%22`` (the HTML standard's form encoding)."""
    name = name.replace("%22", '"')
    name = PurePath(name.replace("\\", "/")).name.strip()
    return "".join(c for c in name if c.isprintable())[:200] or "file"


# Reading an upload


def do_upload(owner_id: int, upload: UploadedFile) -> Attachment:
    """Check and store one file for ``owner_id``'s next message; ChatError says why not."""
    name = clean_name(upload.name or "")
    if upload.size is not None and upload.size > settings.CHAT_MAX_UPLOAD_BYTES:
        raise ChatError(
            f"{name} is {_size(upload.size)}; the limit is {_size(settings.CHAT_MAX_UPLOAD_BYTES)}."
        )
    data = upload.read(settings.CHAT_MAX_UPLOAD_BYTES + 1)
    if len(data) > settings.CHAT_MAX_UPLOAD_BYTES:
        raise ChatError(f"{name} is over {_size(settings.CHAT_MAX_UPLOAD_BYTES)}, the limit.")
    if not data:
        raise ChatError(f"{name} is empty.")
    image = image_format(data)
    attachment = Attachment(owner_id=owner_id, key=new_key(), name=name)
    if image is not None:
        stored, width, height = read_image(name, data, image)
        saved_as = SAVED_AS[image]
        attachment.kind = Attachment.Kind.IMAGE
        attachment.content_type = IMAGE_TYPES[saved_as]
        attachment.width, attachment.height = width, height
        suffix = {"JPEG": ".jpg"}.get(saved_as, f".{saved_as.lower()}")
    else:
        text = read_document(name, data)
        stored, suffix = data, PurePath(name).suffix.lower()
        attachment.kind = Attachment.Kind.DOCUMENT
        attachment.content_type = "application/pdf" if suffix == ".pdf" else "text/plain; charset=utf-8"
        attachment.text, attachment.tokens = text, estimate_tokens(text)
        if attachment.tokens > settings.CHAT_MAX_DOCUMENT_TOKENS:
            raise ChatError(
                f"{name} is about {attachment.tokens:,} tokens of text; "
                f"the limit is {settings.CHAT_MAX_DOCUMENT_TOKENS:,}."
            )
    attachment.size = len(stored)
    attachment.file.save(f"{attachment.key}{suffix}", ContentFile(stored), save=False)
    attachment.save()
    return attachment


def _size(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB" if size >= 1_048_576 else f"{math.ceil(size / 1024)} KB"


# Sending


def check_attachments(conversation: Conversation, keys: list[str]) -> list[Attachment]:
    """The uploads ``keys`` name, for a message in ``conversation``; ChatError if one is
    not its owner's unsent upload, or the conversation's model cannot take them."""
    if not keys:
        return []
    if len(keys) > settings.CHAT_MAX_ATTACHMENTS:
        raise ChatError(f"A message can carry {settings.CHAT_MAX_ATTACHMENTS} files at most.")
    found = {
        a.key: a
        for a in Attachment.objects.filter(key__in=keys, owner_id=conversation.owner_id, message__isnull=True)
    }
    if missing := [key for key in keys if key not in found]:
        raise ChatError(f"{len(missing)} of the files is no longer there; attach it again.")
    attachments = [found[key] for key in dict.fromkeys(keys)]
    if sum(a.tokens for a in attachments) > settings.CHAT_MAX_DOCUMENT_TOKENS:
        raise ChatError(
            f"The files add up to more than {settings.CHAT_MAX_DOCUMENT_TOKENS:,} tokens of text."
        )
    images = [a for a in attachments if a.kind == Attachment.Kind.IMAGE]
    if images:
        _check_images(conversation, len(images))
    return attachments


def _check_images(conversation: Conversation, count: int) -> None:
    provider = get_providers().get(conversation.provider)
    spec = provider.model(conversation.model) if provider else None
    dialect = DIALECTS[provider.dialect] if provider else None
    if dialect is None or not dialect.ACCEPTS_IMAGES or (spec is not None and not spec.images):
        raise ChatError(f"{conversation.model} reads no images: remove the image, or choose another model.")
    if count > dialect.MAX_IMAGES:
        raise ChatError(f"{conversation.model} takes {dialect.MAX_IMAGES} image per message.")
    if not dialect.IMAGE_DATA and not settings.CHAT_PUBLIC_BASE_URL:
        raise ChatError(
            f"{conversation.model} takes images only by address, and this server has no public "
            "address for them (CHAT_PUBLIC_BASE_URL): remove the image, or choose another model."
        )


def unsent(owner_id: int, keys: list[str]) -> list[Attachment]:
    """The person's uploads among ``keys`` that no message has taken yet, in that order."""
    found = {
        a.key: a for a in Attachment.objects.filter(key__in=keys, owner_id=owner_id, message__isnull=True)
    }
    return [found[key] for key in dict.fromkeys(keys) if key in found]


def do_attach(message: Message, attachments: list[Attachment]) -> None:
    """``message`` takes the uploads; what its page shows of them is kept on it too."""
    if not attachments:
        return
    Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)
    message.attachments = [summary(a) for a in attachments]
    message.save(update_fields=["attachments"])


def do_copy(attachments: list[dict], owner_id: int, message: Message) -> None:
    """An edited version of a message carries its files: new rows, the same stored files."""
    rows = Attachment.objects.filter(key__in=[a["key"] for a in attachments], owner_id=owner_id)
    copies = []
    for row in rows:
        row.pk, row.key, row.message = None, new_key(), message
        copies.append(row)
    Attachment.objects.bulk_create(copies)
    order = {a["key"]: i for i, a in enumerate(attachments)}
    message.attachments = [summary(c) for c in sorted(copies, key=lambda c: order.get(c.key, 0))]
    message.save(update_fields=["attachments"])


def summary(attachment: Attachment) -> dict:
    """What a message's HTML shows of a file, without asking the database again."""
    return {
        "key": attachment.key,
        "name": attachment.name,
        "kind": attachment.kind,
        "size": attachment.size,
        "tokens": attachment.tokens,
        "width": attachment.width,
        "height": attachment.height,
    }


def image_reference(attachment: Attachment, as_data: bool) -> str:
    """How the model is sent an image: its bytes as a data URL, or a signed address."""
    if as_data:
        with attachment.file.open("rb") as file:
            encoded = base64.b64encode(file.read()).decode("ascii")
        return f"data:{attachment.content_type};base64,{encoded}"
    token = signing.TimestampSigner(salt=SIGNING_SALT).sign(attachment.key)
    return settings.CHAT_PUBLIC_BASE_URL.rstrip("/") + reverse("chat:signed_attachment", args=[token])


def key_from_signature(token: str) -> str | None:
    try:
        return signing.TimestampSigner(salt=SIGNING_SALT).unsign(
            token, max_age=settings.CHAT_SIGNED_URL_MAX_AGE
        )
    except signing.BadSignature:
        return None


def files_of(messages: list[Message]) -> dict[int, list[Attachment]]:
    """The files of each of ``messages``, in the order they were attached: one query."""
    if not messages:
        return {}
    order = {a["key"]: i for m in messages for i, a in enumerate(m.attachments)}
    found: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message__in=messages):
        found.setdefault(attachment.message_id, []).append(attachment)
    for files in found.values():
        files.sort(key=lambda a: order.get(a.key, 0))
    return found


def with_documents(text: str, files: list[Attachment]) -> str:
    """A message's text as the model reads it: each attached document after it, marked by
    its file name."""
    blocks = []
    for attachment in files:
        if attachment.kind == Attachment.Kind.DOCUMENT:
            name = attachment.name.replace('"', "'")  # the marker's quotes stay the marker's
            blocks.append(f'<document name="{name}">\n{attachment.text}\n</document>')
    return "\n\n".join(part for part in [text, *blocks] if part)


# Deleting


def _delete_unused_file(sender: type[Attachment], instance: Attachment, **kwargs: object) -> None:
    """A file goes with the last row that names it (edited versions share them), once the
    deletion is committed."""
    name = instance.file.name

    def delete() -> None:
        if name and not Attachment.objects.filter(file=name).exists():
            instance.file.storage.delete(name)

    transaction.on_commit(delete)


def connect_signals() -> None:
    post_delete.connect(_delete_unused_file, sender=Attachment, dispatch_uid="chat.attachments.files")
