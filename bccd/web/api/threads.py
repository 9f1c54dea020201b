"""``/api/v1/threads…``, ``/messages/{id}/raw``, ``/attachments/{id}``: the mail a user
can see (SPEC §5.8, §8 ``mail list|show|link|unlink|set|archive|delete``).

Every read goes through the one read model (``mailstore.read`` → ``linking.visibility``;
attachments through ``mailstore.attachments``): a thread, message or attachment the caller
may not see is a 404 with the same words as one that does not exist. Changing visibility,
archiving and deleting are the owner's alone (403 for another user who can see the
thread); linking needs the entity to be visible to the caller too, and removing (or
replacing) a link that narrows who may see the thread is the owner's alone (403).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import Response as FastAPIResponse

from bccd.mailstore import actions, attachments, read
from bccd.store.blobs import BlobReader
from bccd.store.models import Attachment
from bccd.web.api import schemas as S
from bccd.web.api.core import (
    FORBIDDEN,
    NOT_FOUND,
    Caller,
    IdPath,
    Responses,
    current_user,
    param,
    run,
    services_of,
)
from bccd.web.downloads import download, download_blob

router = APIRouter(tags=["threads"])
IdQuery = Annotated[int | None, Query(ge=1, le=S.MAX_ID)]
BINARY: Responses = {200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                           "description": "the bytes, as a download (the stored content type)"}}


@router.get("/threads", response_model=S.ThreadPage, operation_id="listThreads")
async def list_threads(
    request: Request,
    p: Caller,
    person: IdQuery = None,
    organization: IdQuery = None,
    deal: IdQuery = None,
    lead: IdQuery = None,
    project: IdQuery = None,
    q: Annotated[str, Query(max_length=200, description="words that must all appear in the "
                            "subject, a sender or counterpart address, or the text")] = "",
    archived: Annotated[bool | None, Query(description="only archived (true) or only "
                                           "not archived (false) threads")] = None,
    link_state: Annotated[S.LinkState | None, Query(
        description="only threads in this state (needs_choice: suggestions await a choice)")
    ] = None,
    category: Annotated[list[S.Category] | None, Query(
        max_length=5, description="only threads of these categories (SPEC §5.10; repeat it "
        "for several: category=person&category=internal hides automated mail)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Threads the caller can see, newest first. Filtered by an entity (person,
    organization, deal, lead, project) it is that entity's timeline: a message several
    users filed is shown once — the caller's copy, else the earliest — with
    ``also_filed_by``; ``messages`` counts what a row shows."""
    param(q, "q")
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.read() as s:
            filters = read.Filters(person=person, organization=organization, deal=deal,
                                   lead=lead, project=project, q=q, archived=archived,
                                   link_state=link_state,
                                   category=tuple(dict.fromkeys(category or ())))
            return read.list_threads(s, current_user(s, p), filters, limit=limit, offset=offset)

    return await run(request, work)


@router.get("/threads/{thread_id}", response_model=S.ThreadDetail, operation_id="getThread",
            responses=NOT_FOUND)
async def get_thread(request: Request, p: Caller, thread_id: IdPath) -> dict[str, Any]:
    """One thread with its messages; HTML bodies are sanitized, remote images removed."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.read() as s:
            return read.thread_detail(s, None, current_user(s, p), thread_id)

    return await run(request, work)


@router.patch("/threads/{thread_id}", response_model=S.ThreadSummary, operation_id="updateThread",
              responses={**NOT_FOUND, **FORBIDDEN})
async def update_thread(request: Request, p: Caller, thread_id: IdPath,
                        body: S.ThreadPatch) -> dict[str, Any]:
    """Change the thread's visibility (its owner only)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            return actions.set_visibility(s, user, thread_id, body.visibility)

    return await run(request, work)


@router.post("/threads/{thread_id}/archive", response_model=S.Archived,
             operation_id="archiveThread", responses={**NOT_FOUND, **FORBIDDEN})
async def archive_thread(request: Request, p: Caller, thread_id: IdPath) -> dict[str, Any]:
    """Archive the thread (its owner only); with IMAP write-back, on the server too."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            return actions.archive(s, user, thread_id)

    return await run(request, work)


@router.delete("/threads/{thread_id}", response_model=S.Deleted, operation_id="deleteThread",
               responses={**NOT_FOUND, **FORBIDDEN})
async def delete_thread(request: Request, p: Caller, thread_id: IdPath) -> dict[str, Any]:
    """Delete the thread and its messages (its owner only)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            return actions.delete(s, user, thread_id)

    return await run(request, work)


@router.post("/threads/{thread_id}/links", response_model=S.ThreadSummary,
             operation_id="linkThread", responses={**NOT_FOUND, **FORBIDDEN})
async def link_thread(request: Request, p: Caller, thread_id: IdPath,
                      body: S.LinkIn) -> dict[str, Any]:
    """Link the thread to a person, organization, deal, lead or project by hand (a
    deal/lead/project replaces the thread's item link: a thread has at most one; only the
    thread's owner may replace a link to an owner-only item)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            return actions.link(s, user, thread_id, body.kind, body.id)

    return await run(request, work)


@router.delete("/threads/{thread_id}/links/{kind}/{entity_id}", response_model=S.ThreadSummary,
               operation_id="unlinkThread", responses={**NOT_FOUND, **FORBIDDEN})
async def unlink_thread(request: Request, p: Caller, thread_id: IdPath, kind: S.LinkKind,
                        entity_id: IdPath) -> dict[str, Any]:
    """Remove one link (an item unlinked by hand is not linked again automatically). A link
    to an entity visible to its owner only keeps the thread from the rest of the company:
    only the thread's owner may remove it (403 for anyone else)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            return actions.unlink(s, user, thread_id, kind, entity_id)

    return await run(request, work)


@router.get("/messages/{message_id}/raw", response_class=FastAPIResponse,
            operation_id="getRawMessage",
            responses={**NOT_FOUND, 200: {"content": {"message/rfc822": {"schema": {
                "type": "string", "format": "binary"}}}, "description": "the message as received"}})
async def raw_message(request: Request, p: Caller, message_id: IdPath) -> Response:
    """The message exactly as received (byte for byte)."""
    db = services_of(request).db

    def work() -> tuple[str, bytes]:
        with db.read() as s:
            return read.raw_message(s, current_user(s, p), message_id)

    filename, data = await run(request, work)
    return download(data, filename, "message/rfc822")


@router.get("/attachments/{attachment_id}", response_class=FastAPIResponse,
            operation_id="getAttachment", responses={**NOT_FOUND, **BINARY})
async def get_attachment(request: Request, p: Caller, attachment_id: IdPath) -> Response:
    """An attachment of a message in a thread the caller can see."""
    services = services_of(request)
    db = services.db

    def work() -> tuple[Attachment, BlobReader]:
        with db.read() as s:
            att = attachments.attachment_for_user(s, current_user(s, p), attachment_id)
        return att, attachments.open_content(db, services.blobs, att)

    att, reader = await run(request, work)
    return download_blob(db, reader, att.filename or f"attachment-{attachment_id}",
                         att.content_type)
