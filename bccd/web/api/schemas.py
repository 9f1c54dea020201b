"""Request and response bodies of the JSON API — the source of its OpenAPI document.

Response models follow the CLI's JSON shapes (``bccd.mailstore.shapes``, ``bccd.mailstore.read``; SPEC
§8) so both interfaces speak the same fields; the API adds a few (entity ``name`` on links,
sanitized ``html`` on messages, paging). Request models forbid unknown fields, and every
string is bounded and free of NUL and unpaired surrogates (which no database column
accepts), so a malformed request is a 422 problem, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from bccd.addresses import name_problem

MAX_ID = 2**63 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def _display(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(_storable)]
# a name that may stand beside an address in a mail header: no control characters
DisplayText = Annotated[str, StringConstraints(max_length=255), AfterValidator(_storable),
                        AfterValidator(_display)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True),
                        AfterValidator(_storable), AfterValidator(_display)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True),
                 AfterValidator(_storable)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, strip_whitespace=True),
                  AfterValidator(_storable)]
EntityId = Annotated[int, Field(ge=1, le=MAX_ID)]
LinkKind = Literal["person", "organization", "deal", "lead", "project"]
# SPEC §5.12, ``bccd.linking.linkstate.STATES``
LinkState = Literal["linked", "needs_choice", "no_open_item", "no_person", "manual_mode",
                    "automated"]
Visibility = Literal["private", "shared"]
VisibleTo = Literal["company", "owner"]
# SPEC §5.10, ``bccd.linking.categories.CATEGORIES``
Category = Literal["person", "internal", "bounce", "auto_reply", "bulk"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


# ------------------------------------------------------------------ user and settings
class AlternateBrief(BaseModel):
    email: str
    status: str


class Me(BaseModel):
    id: int
    email: str
    name: str
    company: str
    admin: bool
    disabled: bool
    bcc_address: str
    sharing_default: str
    linking_mode: str
    email_links: str
    tracking_opens: bool
    tracking_clicks: bool
    alternates: list[AlternateBrief]
    blocked: list[str]


class UserSettings(BaseModel):
    sharing_default: Visibility
    linking_mode: Literal["auto", "manual"]
    email_links: Literal["app", "default-client"]
    signature_html: str = Field(description="added to mail written in bccd (sanitized HTML)")
    tracking_opens: bool = Field(description="track opens of mail sent from bccd (SPEC §13)")
    tracking_clicks: bool = Field(description="track clicks of its links")
    tracking_allowed: bool = Field(description="the company allows tracking (read-only)")


class SettingsPatch(_In):
    sharing_default: Visibility | None = None
    linking_mode: Literal["auto", "manual"] | None = None
    email_links: Literal["app", "default-client"] | None = None
    signature_html: Annotated[str, StringConstraints(max_length=256 * 1024),
                              AfterValidator(_storable)] | None = None
    tracking_opens: StrictBool | None = None
    tracking_clicks: StrictBool | None = None


class AlternateIn(_In):
    email: Email


class Alternate(BaseModel):
    email: str
    status: str
    added_at: str
    confirmed_at: str | None
    last_sent_at: str | None
    expires_at: str | None
    quarantined: int


class AlternateSent(BaseModel):
    email: str
    status: str
    confirmation: str
    resent: bool
    expires_at: str


class BlockedIn(_In):
    pattern: Email


class Blocked(BaseModel):
    pattern: str
    kind: Literal["address", "domain"]
    created_at: str


# ------------------------------------------------------------------ threads
class LinkOut(BaseModel):
    kind: str
    id: int
    how: str
    name: str | None = None
    bouncing: bool | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "present (true) on a person one of whose addresses bounced (SPEC §5.10)"))


class SuggestionOut(BaseModel):
    kind: str
    id: int
    name: str | None = None


class ThreadSummary(BaseModel):
    thread_id: int
    subject: str
    visibility: str
    owner: str | None
    archived: bool
    messages: int
    last_message_at: str
    links: list[LinkOut]
    suggestions: list[SuggestionOut]
    link_state: LinkState = Field(description="why the thread is (not) linked to a deal, "
                                  "lead or project (SPEC §5.12)")
    category: Category = Field(description="the most human category of its messages "
                               "(SPEC §5.10)")
    also_filed_by: list[str] = Field(default_factory=list, description=(
        "on an entity's timeline: the other users whose copies of this thread's messages "
        "are shown once, here"))


class ThreadPage(BaseModel):
    threads: list[ThreadSummary]
    limit: int
    offset: int
    next_offset: int | None


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


class ForwardingOut(BaseModel):
    by: str | None = Field(description="who forwarded the original")
    dkim: str
    spf: str
    dmarc: str
    arc: str
    verdict: str
    signing_domains: list[str]
    authentication_results: str


class AuthOut(BaseModel):
    dkim: str
    spf: str
    dmarc: str
    arc: str
    verdict: str = Field(description="pass | fail | none | skipped, or forwarded: an "
                         "original recovered from a forward has no verdict of its own")
    signing_domains: list[str]
    authentication_results: str
    forwarding: ForwardingOut | None = Field(
        default=None, description="for a forwarded original: the verdict of the forwarding")


class SendState(BaseModel):
    status: Literal["sent", "queued", "failed"]
    reason: str = Field(description="queued or failed: the last reply or failure")
    refused: list[dict[str, str]] = Field(description="recipients refused: {address, reply}")


class OpensOut(BaseModel):
    human: int
    machine: int
    first_human_at: str | None


class ClickOut(BaseModel):
    url: str
    human: int
    machine: int


class TrackingOut(BaseModel):
    opens: OpensOut | None = Field(description="null: opens were not tracked")
    clicks: list[ClickOut] | None = Field(description="per link; null: clicks were not tracked")
    hidden_link: int = Field(description="hits on the hidden link only software follows")


class MessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    message_id: str | None
    direction: str
    from_: str = Field(alias="from")
    from_name: str
    to: list[str]
    cc: list[str]
    subject: str
    date: str | None
    sources: list[str]
    text: str
    has_html: bool
    html: str | None = Field(description="the HTML body, sanitized; remote images removed")
    remote_images: bool = Field(description="the original HTML references remote images")
    forwarded_by: str | None
    unverified_sender: bool = Field(
        description="synced mail whose From claims the user but was not proven theirs "
                    "(not in the sent folder, no DMARC pass from the provider): incoming")
    attachments: list[AttachmentOut]
    auth: AuthOut
    send: SendState | None = Field(default=None, description="mail written in bccd: how its "
                                                             "sending stands")
    tracking: TrackingOut | None = Field(
        default=None, description="mail sent from bccd with tracking (SPEC §13): opens and "
                                  "clicks by people and by machines; null otherwise")
    category: Category
    category_reason: str = Field(description="what made it that category ('' for person)")


class AttendeeOut(BaseModel):
    email: str
    name: str
    answer: Literal["needs-action", "accepted", "declined", "tentative", "delegated"]


class MeetingOut(BaseModel):
    """A calendar invite's meeting (SPEC §5.13); times in the event's own UTC offset."""

    uid: str
    summary: str
    location: str
    start: str | None = Field(description="ISO 8601; a date for an all-day event")
    end: str | None
    all_day: bool
    timezone: str | None = Field(description="the invite's TZID")
    organizer: str | None
    organizer_name: str
    attendees: list[AttendeeOut]
    status: Literal["confirmed", "tentative", "cancelled"]
    sequence: int
    method: Literal["REQUEST", "REPLY", "CANCEL"] = Field(description="of its last change")
    updated_at: str | None


class ThreadDetail(BaseModel):
    thread_id: int
    subject: str
    visibility: str
    owner: str | None
    archived: bool
    links: list[LinkOut]
    suggestions: list[SuggestionOut]
    link_state: LinkState
    category: Category
    manual_items: bool
    meeting: MeetingOut | None = Field(description="its calendar invite's meeting, if any")
    messages: list[MessageOut]


class LinkIn(_In):
    kind: LinkKind
    id: EntityId


class ThreadPatch(_In):
    visibility: Visibility


class Archived(BaseModel):
    thread_id: int
    archived: bool
    writeback_jobs: int


class Deleted(BaseModel):
    thread_id: int
    deleted: bool
    messages: int
    writeback_jobs: int


class Held(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    from_: str = Field(alias="from")
    subject: str
    size: int
    received_at: str
    status: Literal["held", "released"]
    released_at: str | None


class Released(BaseModel):
    id: int
    outcome: str
    reason: str
    message_id: int | None
    thread_id: int | None


class RejectionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    at: str
    recipient: str
    from_: str = Field(alias="from")
    mail_from: str
    client_ip: str
    message_id: str | None
    code: str
    reason: str
    auth: dict[str, Any]


# ------------------------------------------------------------------ admin: CRM upserts
class PersonIn(_In):
    name: DisplayText = ""
    emails: list[Email] = Field(min_length=1, max_length=50)
    organization_id: EntityId | None = None
    organization_external_id: Name | None = None
    owner: Email | None = Field(default=None, description="login address of the owning user")
    visible_to: VisibleTo = "company"


class BouncingOut(BaseModel):
    email: str
    since: str
    reason: str


class PersonOut(BaseModel):
    id: int
    name: str
    emails: list[str]
    bouncing: list[BouncingOut] = Field(default_factory=list, description=(
        "addresses a bounce of the owner's mail said fail; cleared by a later message "
        "from them (SPEC §5.10)"))
    organization_id: int | None
    external_id: str | None
    owner_id: int | None
    visible_to: str
    created: bool
    relinked_threads: int


class OrganizationIn(_In):
    name: DisplayName
    owner: Email | None = None
    visible_to: VisibleTo = "company"


class OrganizationOut(BaseModel):
    id: int
    name: str
    external_id: str | None
    owner_id: int | None
    visible_to: str
    created: bool


class ItemIn(_In):
    title: Name
    status: Literal["open", "won", "lost", "archived", "closed"] = Field(
        default="open", description="deal: open|won|lost; lead: open|archived; project: open|closed")
    person_id: EntityId | None = None
    person_external_id: Name | None = None
    organization_id: EntityId | None = None
    organization_external_id: Name | None = None
    deal_id: EntityId | None = Field(default=None, description="projects only")
    deal_external_id: Name | None = Field(default=None, description="projects only")
    owner: Email | None = None
    visible_to: VisibleTo = "company"
    value: Annotated[str, StringConstraints(max_length=64, strip_whitespace=True),
                     AfterValidator(_storable)] | None = Field(
        default=None, description='as the CRM shows it, e.g. "12,000 EUR" (smart field '
                                  '{{deal.value}})')


class ItemOut(BaseModel):
    id: int
    kind: str
    title: str
    status: str
    person_id: int | None
    organization_id: int | None
    deal_id: int | None
    external_id: str | None
    owner_id: int | None
    visible_to: str
    bcc_address: str
    value: str | None = None
    created: bool
    relinked_threads: int


class UserIn(_In):
    email: Email
    name: DisplayText = ""
    admin: bool = False


class UserCreated(BaseModel):
    id: int
    email: str
    bcc_address: str
    api_token: str = Field(description="shown once; only its hash is stored")


class UserBrief(BaseModel):
    id: int
    email: str
    name: str
    company: str
    admin: bool
    disabled: bool
    bcc_address: str


class BccAddress(BaseModel):
    bcc_address: str


class DeliveryOut(BaseModel):
    job_id: int
    webhook_id: str
    type: str
    state: Literal["pending", "done", "failed"]
    attempts: int
    last_error: str
    created_at: str
    next_attempt_at: str | None
    done_at: str | None


class CompanyOut(BaseModel):
    """A company's settings (SPEC §1, §5.10)."""

    id: int
    slug: str
    name: str
    create_unknown_contacts: bool
    domains: list[str] = Field(description="its own mail domains (mail among them and its "
                               "users is internal)")
    domains_default: bool = Field(description="true: not named, its users' login domains")
    automated_mail: Literal["unlinked", "store", "drop"]
    internal_mail: Literal["store", "drop"]


class CompanyPatch(_In):
    create_unknown_contacts: StrictBool | None = None
    domains: list[Name] | None = Field(default=None, max_length=100, description=(
        "its own mail domains; null or [] → the default (its users' login domains)"))
    automated_mail: Literal["unlinked", "store", "drop"] | None = None
    internal_mail: Literal["store", "drop"] | None = None
