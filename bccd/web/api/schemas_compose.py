"""Request and response bodies of composing and sending (SPEC §12): ``POST /messages``,
``/me/templates``. Same conventions as ``api.schemas``: unknown fields are refused, every
string is bounded and storable."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StringConstraints

from bccd.web.api.schemas import MAX_ID, EntityId, _In, _storable

MAX_HTML = 64 * 1024 * 1024   # the body limit of the route bounds it first
AddressText = Annotated[str, StringConstraints(min_length=1, max_length=2000),
                        AfterValidator(_storable)]
MessageRef = Annotated[str, StringConstraints(min_length=1, max_length=998),
                       AfterValidator(_storable)] | Annotated[int, Field(ge=1, le=MAX_ID)]
Html = Annotated[str, StringConstraints(max_length=MAX_HTML), AfterValidator(_storable)]
Subject = Annotated[str, StringConstraints(max_length=998), AfterValidator(_storable)]


class AttachmentIn(_In):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255),
                        AfterValidator(_storable)]
    content_type: Annotated[str, StringConstraints(
        max_length=129, pattern=r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")] = \
        "application/octet-stream"
    content_base64: Annotated[str, StringConstraints(max_length=MAX_HTML)]


class MessageIn(_In):
    from_mailbox: EntityId | None = Field(
        default=None, description="the mailbox (id) that sends; default: the caller's first "
                                  "mailbox with submission settings")
    to: list[AddressText] = Field(min_length=1, max_length=100,
                                  description='addresses: "bob@example.com" or '
                                              '"Bob <bob@example.com>"')
    cc: list[AddressText] = Field(default_factory=list, max_length=100)
    bcc: list[AddressText] = Field(default_factory=list, max_length=100)
    subject: Subject | None = Field(
        default=None, description="may be left out with a template, reply_to or forward_of")
    html: Html | None = Field(
        default=None, description="the body; data: images become inline parts; sanitized")
    text: Html | None = Field(default=None, description="a plain-text body instead of html")
    template_id: EntityId | None = None
    reply_to: MessageRef | None = Field(
        default=None, description="bccd's message id or the RFC Message-ID replied to")
    forward_of: MessageRef | None = Field(
        default=None, description="bccd's message id or the RFC Message-ID forwarded")
    deal_id: EntityId | None = None
    lead_id: EntityId | None = None
    project_id: EntityId | None = None
    person_id: EntityId | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    signature: StrictBool = Field(default=True, description="add the caller's signature")
    track_opens: StrictBool | None = Field(
        default=None, description="track opens of this message (SPEC §13); default: the "
                                  "caller's tracking_opens setting; HTML only")
    track_clicks: StrictBool | None = Field(
        default=None, description="track clicks of its links; default: the caller's "
                                  "tracking_clicks setting; HTML only")


class RefusedRecipient(BaseModel):
    address: str
    reply: str


class MessageSent(BaseModel):
    id: int | None = Field(description="bccd's message id (as in the thread JSON)")
    message_id: str = Field(description="the RFC 5322 Message-ID")
    thread_id: int | None
    status: Literal["sent", "queued", "failed"]
    refused: list[RefusedRecipient] = Field(description="recipients refused for good")
    reason: str | None = Field(default=None, description="queued: why it is not sent yet")


class TemplateIn(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True),
                    AfterValidator(_storable)]
    subject: Subject = ""
    html: Annotated[str, StringConstraints(max_length=512 * 1024), AfterValidator(_storable)] = ""
    shared: StrictBool = Field(default=False, description="visible to the whole company (admins only)")


class TemplatePatch(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True),
                    AfterValidator(_storable)] | None = None
    subject: Subject | None = None
    html: Annotated[str, StringConstraints(max_length=512 * 1024),
                    AfterValidator(_storable)] | None = None
    shared: StrictBool | None = None


class TemplateOut(BaseModel):
    id: int
    name: str
    subject: str
    html: str
    shared: bool
    owner: str | None
    created_at: str
    updated_at: str


class RenderIn(_In):
    person_id: EntityId | None = None
    organization_id: EntityId | None = None
    deal_id: EntityId | None = None
    lead_id: EntityId | None = None
    project_id: EntityId | None = None
    thread_id: EntityId | None = Field(
        default=None, description="a thread replied to: its person and deal fill the fields")


class Rendered(BaseModel):
    subject: str
    html: str
    text: str
