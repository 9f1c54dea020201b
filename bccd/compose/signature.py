"""The user's signature (SPEC §1 ``signature_html``, §12) and stored HTML in general.

``clean_stored(html, field, limit)`` is what HTML a user saves for later — a signature, a
template — goes through: the sanitizer allowlist of displayed mail
(``mailstore.sanitize.clean_outgoing_html``), keeping ``data:`` images (PNG, JPEG, GIF,
WebP; each becomes an inline part when the mail is sent) and http(s) images, dropping
every other image source. ``set_signature(session, user, html)`` stores the cleaned
signature (an empty one — no text, no image, as an emptied editor leaves it — turns it
off). The signature is added to new mail, replies and
forwards unless a message asks otherwise (``mime.Draft.signature_html``).
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from bccd.errors import Invalid
from bccd.mailstore.sanitize import clean_outgoing_html
from bccd.store.models import User

MAX_SIGNATURE = 256 * 1024
_TAG = re.compile(r"<[^>]*>")
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.IGNORECASE)


def _keep(value: str) -> str | None:
    if value[:8].lower().startswith(("https://", "http://")):
        return value
    return value if _DATA_IMAGE.fullmatch(value) else None


def clean_stored(html: str, field: str, limit: int) -> str:
    if len(html) > limit:
        raise Invalid(f"{field}: at most {limit // 1024} KiB")
    return clean_outgoing_html(html, image_src=_keep).strip()


def set_signature(s: Session, user: User, html: str) -> str:
    cleaned = clean_stored(html, "signature_html", MAX_SIGNATURE)
    if not _TAG.sub("", cleaned).replace("&nbsp;", "").strip() and "<img" not in cleaned.lower():
        cleaned = ""  # an empty editor's markup (``<div><br></div>``) is no signature
    user.signature_html = cleaned
    s.flush()
    return user.signature_html
