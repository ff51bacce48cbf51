"""Attachments: checked and re-encoded on upload, served only to their owner, sent to the
model in each dialect's form, carried by edits, deleted with their conversation."""

from __future__ import annotations

import base64
import io
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from chat.models import Attachment, Conversation, Message, TranscriptAccess
from tests import attachment_files as files
from tests.servers import SimulatorProcess
from tests.test_consumers import (
    another_reply_complete,
    connect,
    frames_until,
    make_conversation,
    make_user,
    reply_of,
)

COMPLETE = r'data-role="assistant" data-status="complete"'


@pytest.fixture(autouse=True)
def _media(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x" * 12)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="x" * 12)


def upload(client, name: str, data: bytes):
    return client.post(reverse("chat:upload"), {"file": SimpleUploadedFile(name, data)})


def stored(attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as file:
        return file.read()


# Uploading


@pytest.mark.django_db
def test_an_image_is_re_encoded_without_its_location_and_shown_as_a_thumbnail(client, alice) -> None:
    client.force_login(alice)
    response = upload(client, "../../holiday.jpg", files.jpeg_with_location())
    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert (attachment.kind, attachment.name, attachment.content_type) == (
        "image",
        "holiday.jpg",
        "image/jpeg",
    )
    assert f'name="attachment" value="{attachment.key}"' in response.content.decode()
    assert f'<img class="thumbnail" src="/attachments/{attachment.key}/"' in response.content.decode()
    with Image.open(io.BytesIO(stored(attachment))) as image:
        assert image.size == (64, 48) and not image.getexif()
    assert "holiday" not in attachment.file.name and attachment.key in attachment.file.name


@pytest.mark.django_db
def test_a_gif_is_kept_as_a_png_and_a_pdf_and_a_text_file_are_read_as_text(client, alice) -> None:
    client.force_login(alice)
    upload(client, "anim.gif", files.gif())
    upload(client, "tides.pdf", files.pdf_with_text("High tide is at noon"))
    upload(client, "notes.md", "\ufeff# Notes\n\nLow tide at six.".encode())
    gif, pdf, notes = Attachment.objects.order_by("pk")
    assert gif.content_type == "image/png" and stored(gif).startswith(b"\x89PNG")
    assert (pdf.kind, pdf.text) == ("document", "High tide is at noon")
    assert notes.text == "# Notes\n\nLow tide at six." and notes.tokens == 7


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("photo.png", files.EXECUTABLE, "photo.png is not a PNG, JPEG, WebP or GIF image."),
        ("notes.txt", files.EXECUTABLE, "notes.txt is not a text file."),
        ("setup.exe", files.EXECUTABLE, "setup.exe cannot be attached: attach an image"),
        ("broken.pdf", b"%PDF-1.4\nnot really", "broken.pdf could not be read as a PDF."),
        ("latin.txt", "café".encode("latin-1"), "latin.txt is not text in UTF-8."),
        ("empty.txt", b"", "empty.txt is empty."),
        ("huge.png", files.pixel_bomb(), "huge.png is 2,000×2,000 pixels; the limit is 1,000,000 pixels."),
        ("big.txt", b"x" * 3000, "big.txt is 3 KB; the limit is 2 KB."),
        ("long.txt", b"word " * 400, "long.txt is about 500 tokens of text; the limit is 300."),
    ],
)
def test_bad_files_get_a_clear_error_and_store_nothing(client, alice, settings, name, data, reason) -> None:
    settings.CHAT_MAX_IMAGE_PIXELS = 1_000_000
    settings.CHAT_MAX_UPLOAD_BYTES = 2048
    settings.CHAT_MAX_DOCUMENT_TOKENS = 300
    client.force_login(alice)
    response = upload(client, name, data)
    assert response.status_code == 400
    assert response.content.decode().startswith(reason)
    assert not Attachment.objects.exists()
    assert not (settings.MEDIA_ROOT / "attachments").exists()


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_before_it_is_read(client, alice, settings) -> None:
    settings.CHAT_MAX_UPLOAD_BYTES = 1024
    client.force_login(alice)
    response = upload(client, "big.txt", b"x" * 200_000)
    assert response.status_code == 413 and "the limit" in response.content.decode()


# Who may read them


@pytest.mark.django_db
def test_a_file_is_served_to_its_owner_only_never_sniffed(client, alice, bob) -> None:
    client.force_login(alice)
    upload(client, "tides.png", files.png())
    upload(client, "page.html", b"<script>window.pwned = 1</script>")
    image, page = Attachment.objects.order_by("pk")

    response = client.get(reverse("chat:attachment", args=[image.key]))
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == stored(image)
    response = client.get(reverse("chat:attachment", args=[page.key]))
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]

    client.force_login(bob)
    assert client.get(reverse("chat:attachment", args=[image.key])).status_code == 404
    client.logout()
    response = client.get(reverse("chat:attachment", args=[image.key]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_staff_read_a_file_through_the_transcript_and_the_read_is_logged(client, admin_client, alice) -> None:
    client.force_login(alice)
    upload(client, "tides.png", files.png())
    attachment = Attachment.objects.get()
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    message = Message.objects.create(conversation=conversation, role="user", content="See")
    from chat.attachments import do_attach

    do_attach(message, [attachment])
    transcript = admin_client.get(reverse("admin:chat_conversation_transcript", args=[conversation.pk]))
    url = reverse("admin:chat_conversation_attachment", args=[conversation.pk, attachment.key])
    assert url in transcript.content.decode()
    before = TranscriptAccess.objects.count()
    response = admin_client.get(url)
    assert b"".join(response.streaming_content) == stored(attachment)
    assert TranscriptAccess.objects.count() == before + 1
    # Not through another conversation's address, and not for a person without the permission.
    other = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    wrong = reverse("admin:chat_conversation_attachment", args=[other.pk, attachment.key])
    assert admin_client.get(wrong).status_code == 404
    assert client.get(url).status_code == 302


# Sending


async def send(page, text: str, keys: list[str], client_id: str) -> None:
    await page.send_to(json.dumps({"message": text, "client_id": client_id, "attachment": keys}))


async def uploaded(owner, name: str, data: bytes) -> Attachment:
    from chat.attachments import do_upload

    return await sync_to_async(do_upload)(owner.pk, SimpleUploadedFile(name, data))


@pytest.mark.django_db(transaction=True)
async def test_images_go_as_data_and_documents_into_the_prompt_marked_by_name(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    photo = await uploaded(alice, "reef.png", files.png())
    chart = await uploaded(alice, "chart.png", files.png(color=(0, 0, 0)))
    tides = await uploaded(alice, "tides.pdf", files.pdf_with_text("High tide is at noon"))
    _, page = await connect(alice, conversation.pk)
    await send(page, "What do these show? [sim tokens=5 tps=200]", [photo.key, tides.key, chart.key], "a1")
    frames = await frames_until(page, COMPLETE)
    await page.disconnect()

    content = sim.last()["body"]["messages"][-1]["content"]
    text, *images = content
    assert text["text"].endswith('<document name="tides.pdf">\nHigh tide is at noon\n</document>')
    assert [i["image_url"]["url"] for i in images] == [
        "data:image/png;base64," + base64.b64encode(await sync_to_async(stored)(a)).decode()
        for a in (photo, chart)
    ]
    message = await Message.objects.aget(conversation=conversation, role="user")
    assert [f["name"] for f in message.attachments] == ["reef.png", "tides.pdf", "chart.png"]
    assert await Attachment.objects.filter(message=message).acount() == 3
    assert f"/attachments/{photo.key}/" in "".join(frames)


@pytest.mark.django_db(transaction=True)
async def test_a_message_of_files_alone_is_sent_and_regenerating_sends_them_again(
    sim: SimulatorProcess,
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    photo = await uploaded(alice, "reef.png", files.png())
    _, page = await connect(alice, conversation.pk)
    await send(page, "", [photo.key], "b1")
    await frames_until(page, COMPLETE)
    reply = await reply_of(conversation)
    await page.send_to(json.dumps({"action": "regenerate", "id": reply.pk, "client_id": "b2"}))
    await frames_until(page, another_reply_complete(reply.pk))
    await page.disconnect()

    first, again = sim.requests()[-2:]
    for request in (first, again):
        parts = request["body"]["messages"][-1]["content"]
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.django_db(transaction=True)
async def test_someone_elses_upload_cannot_be_sent_and_the_box_keeps_what_was_typed(
    sim: SimulatorProcess,
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    conversation = await make_conversation(alice)
    mine = await uploaded(alice, "mine.txt", b"mine")
    theirs = await uploaded(bob, "theirs.txt", b"secret")
    _, page = await connect(alice, conversation.pk)
    await send(page, "Read this", [mine.key, theirs.key], "c1")
    frame = await page.receive_from(5)
    await page.disconnect()

    assert "1 of the files is no longer there; attach it again." in frame
    assert f'value="{mine.key}"' in frame and theirs.key not in frame and "Read this" in frame
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert await Attachment.objects.filter(message__isnull=True).acount() == 2


@pytest.mark.django_db(transaction=True)
async def test_models_that_cannot_take_the_images_refuse_them_with_a_sentence(
    sim: SimulatorProcess, providers_file, settings
) -> None:
    providers_file(
        '[[providers]]\nname = "mu"\ndialect = "muapi"\nbase_url = "{sim}/muapi"\nmodels = ["flash"]\n\n'
        '[[providers]]\nname = "gen"\ndialect = "text-delta"\nbase_url = "{sim}/v1"\nmodels = ["g"]\n'
    )
    alice = await make_user("alice")
    flash = await Conversation.objects.acreate(owner=alice, provider="mu", model="flash")
    generic = await Conversation.objects.acreate(owner=alice, provider="gen", model="g")
    photos = [await uploaded(alice, f"p{n}.png", files.png()) for n in range(3)]

    _, page = await connect(alice, generic.pk)
    await send(page, "Look", [photos[0].key], "d1")
    assert "g reads no images: remove the image, or choose another model." in await page.receive_from(5)
    await page.disconnect()
    _, page = await connect(alice, flash.pk)
    await send(page, "Look", [photos[0].key, photos[1].key], "d2")
    assert "flash takes 1 image per message." in await page.receive_from(5)
    await send(page, "Look", [photos[0].key], "d3")
    assert "flash takes images only by address" in await page.receive_from(5)
    settings.CHAT_PUBLIC_BASE_URL = "https://chat.example.com"
    await send(page, "Look [sim tokens=5 tps=200]", [photos[0].key], "d4")
    await frames_until(page, COMPLETE)
    await page.disconnect()

    address = sim.last()["body"]["image_url"]
    assert address.startswith("https://chat.example.com/attachments/signed/")


@pytest.mark.django_db
def test_a_signed_address_serves_its_image_to_anyone_until_it_expires(client, alice, settings) -> None:
    from chat.attachments import do_upload, image_reference

    settings.CHAT_PUBLIC_BASE_URL = "https://chat.example.com"
    photo = do_upload(alice.pk, SimpleUploadedFile("reef.png", files.png()))
    path = image_reference(photo, as_data=False).removeprefix("https://chat.example.com")
    assert b"".join(client.get(path).streaming_content) == stored(photo)
    assert client.get(path.replace(photo.key, photo.key[:-1] + "A")).status_code == 404
    settings.CHAT_SIGNED_URL_MAX_AGE = -1
    assert client.get(path).status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_an_edited_message_carries_its_files_and_deleting_both_removes_them(
    sim: SimulatorProcess,
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    tides = await uploaded(alice, "tides.txt", b"High tide is at noon")
    _, page = await connect(alice, conversation.pk)
    await send(page, "Summarise [sim tokens=5 tps=200]", [tides.key], "e1")
    await frames_until(page, COMPLETE)
    original = await Message.objects.aget(conversation=conversation, role="user")
    await page.send_to(
        json.dumps({"action": "edit", "id": original.pk, "message": "Again [sim tokens=5 tps=200]"})
    )
    await frames_until(page, another_reply_complete(original.pk))
    await page.disconnect()

    assert (
        '<document name="tides.txt">\nHigh tide is at noon' in sim.last()["body"]["messages"][-1]["content"]
    )
    edited = await Message.objects.exclude(pk=original.pk).aget(conversation=conversation, role="user")
    assert [f["name"] for f in edited.attachments] == ["tides.txt"]
    name = tides.file.name
    assert await sync_to_async(default_storage.exists)(name)
    await sync_to_async(call_command)("purge_conversations", "--days", "1")  # too young: kept
    assert await sync_to_async(default_storage.exists)(name)
    await conversation.adelete()
    assert not await Attachment.objects.aexists()
    assert not await sync_to_async(default_storage.exists)(name)


@pytest.mark.django_db
def test_the_retention_command_removes_uploads_never_sent(alice, django_capture_on_commit_callbacks) -> None:
    from django.utils import timezone

    from chat.attachments import do_upload

    old = do_upload(alice.pk, SimpleUploadedFile("old.txt", b"old"))
    new = do_upload(alice.pk, SimpleUploadedFile("new.txt", b"new"))
    Attachment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timezone.timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_conversations", "--days", "30")
    assert list(Attachment.objects.values_list("name", flat=True)) == ["new.txt"]
    assert not default_storage.exists(old.file.name) and default_storage.exists(new.file.name)
