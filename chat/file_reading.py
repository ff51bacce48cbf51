"""What an uploaded file holds: an image decoded and re-encoded, a document's text.

Pillow must recognise an image as one of the allowed types within the pixel limit; it is
re-encoded, which drops its metadata (EXIF GPS and the like). A document is read as text:
a PDF by pypdf, anything else only by a suffix of a text format, and only as UTF-8.
Each refusal is a ``ChatError`` that names the file and says why.
"""

from __future__ import annotations

import io
from pathlib import PurePath

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from chat.checks import ChatError

# Pillow's format -> how it is stored and served.
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# GIF is stored as PNG (its first frame): what every vision model reads.
SAVED_AS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WEBP", "GIF": "PNG"}
TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml",
    ".ini", ".cfg", ".log", ".xml", ".html", ".css", ".js", ".ts", ".tsx", ".jsx", ".py", ".rb",
    ".go", ".rs", ".java", ".kt", ".c", ".h", ".cpp", ".hpp", ".cs", ".php", ".sh", ".sql", ".swift",
}  # fmt: skip
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
KINDS = "an image (PNG, JPEG, WebP or GIF), a PDF, or a text file (plain text, Markdown, CSV or code)"


def image_format(data: bytes) -> str | None:
    """The format Pillow recognises ``data`` as, or None when it is no image at all."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or ""
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def read_image(name: str, data: bytes, detected: str) -> tuple[bytes, int, int]:
    """The image re-encoded without its metadata, and its size; ChatError if it is not an
    allowed type, too large in pixels, or broken."""
    if detected not in IMAGE_TYPES:
        raise ChatError(f"{name} is a {detected or 'kind of'} image; attach {KINDS}.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > settings.CHAT_MAX_IMAGE_PIXELS:
                raise ChatError(
                    f"{name} is {width:,}×{height:,} pixels; the limit is "
                    f"{settings.CHAT_MAX_IMAGE_PIXELS:,} pixels."
                )
            image.load()
            upright = ImageOps.exif_transpose(image)
            saved_as = SAVED_AS[detected]
            if saved_as == "JPEG" and upright.mode not in ("RGB", "L"):
                upright = upright.convert("RGB")
            out = io.BytesIO()
            # No exif, icc or text chunks are passed on: the new file carries none.
            upright.save(out, saved_as, **({"quality": 90} if saved_as in ("JPEG", "WEBP") else {}))
            return out.getvalue(), upright.width, upright.height
    except ChatError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ChatError(f"{name} could not be read as an image ({type(exc).__name__}).") from None


def read_document(name: str, data: bytes) -> str:
    suffix = PurePath(name).suffix.lower()
    if suffix == ".pdf":
        return _pdf_text(name, data)
    if suffix in IMAGE_SUFFIXES:
        raise ChatError(f"{name} is not a PNG, JPEG, WebP or GIF image.")
    if suffix not in TEXT_SUFFIXES:
        raise ChatError(f"{name} cannot be attached: attach {KINDS}.")
    if b"\x00" in data:
        raise ChatError(f"{name} is not a text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChatError(f"{name} is not text in UTF-8.") from None


def _pdf_text(name: str, data: bytes) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ChatError(f"{name} is encrypted; attach a PDF without a password.")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except ChatError:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, RecursionError):
        raise ChatError(f"{name} could not be read as a PDF.") from None
    if not text:
        raise ChatError(f"{name} has no text to read (a scanned PDF has only pictures of text).")
    return text
