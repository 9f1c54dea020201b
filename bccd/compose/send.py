"""Sending a message written in bccd (SPEC §12): the one path of the API, the CLI and the
Mail page, and the outbox's retries.

``Sender(settings, db, pipeline).send(request, idempotency_key=…, request_hash=…)`` →
``Answer`` (an HTTP status and its JSON body):

1. A repeat of an ``Idempotency-Key`` gets the first answer back (a different request
   under the same key: ``Invalid``; the first still running: ``Conflict``).
2. ``prepare.prepare`` — refusals (``bccd.errors``, naming the field) happen here, before
   anything is written.
3. The send is recorded (``Send``, with the user's copy of the bytes — and, for a tracked
   message, the recipients' bytes and its tracking record, SPEC §13) together with an
   outbox job of kind ``send`` that this request has already claimed
   (``outbox.add_claimed``): from here on the message is never lost — if this process
   dies, the job's lease runs out and the outbox worker sends it.
4. One submission through the user's mailbox (``submit``) while the client waits.
5. The outcome, in one transaction with filing the message through ``ingest``
   (``Pipeline.file_composed``, source ``compose``): **sent** — ``201`` once the server
   accepted it (``message.sent``; the copy is appended to the sent folder by a
   ``sent_copy`` job, ``bccd.imap.sentcopy``) —; **queued** — a temporary failure, or a
   recipient refused temporarily: filed, ``202``, retried by the outbox (first within
   seconds) —; **refused** — every recipient refused for good: ``422`` with the server's
   words for each, nothing filed. A mailbox that cannot send (login refused, certificate
   not trusted) is ``Conflict`` naming it, and nothing is kept: the request can be made
   again once the mailbox is fixed.

``Sender.run_job(payload)`` is the outbox handler of kind ``send``: it sends to the
recipients still pending, files the message if the first attempt could not, records the
outcome the same way, and raises to be retried while recipients are pending. A send still
pending ``GIVE_UP`` after it was made is ``failed`` (``message.send_failed``); so is one
whose user was disabled or whose mailbox was removed meanwhile.

Delivery is at least once: a crash between the server's ``250`` and the commit that
records it (milliseconds) sends the message again after the restart — with the same
Message-ID, so the recipients' mail programs and bccd show it once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd import metrics
from bccd.compose import context, mime
from bccd.compose.prepare import Prepared, SendRequest, prepare
from bccd.compose.submit import MailboxProblem, Result, Unreachable, submit
from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.errors import BccdError, Conflict, Invalid
from bccd.ingest.outcome import Outcome
from bccd.ingest.pipeline import Pipeline
from bccd.log import get_logger
from bccd.mailboxes.accounts import Auth, OAuth2Auth, load_auth, save_auth
from bccd.notify.jobs import PermanentFailure
from bccd.store import events, outbox
from bccd.store.db import Database
from bccd.store.models import Message, OutboxJob, User, utcnow
from bccd.store.models_compose import Send
from bccd.tracking import hits

log = get_logger("bccd.compose")

KIND = "send"
SENT_COPY_KIND = "sent_copy"   # performed by bccd.imap.sentcopy
GIVE_UP = outbox.MAX_AGE - dt.timedelta(hours=1)
FILE_RETRY = 2.0               # seconds: the worker files a sent message filing missed
# the first attempt's hold on its job: well beyond a slow server's worst case (every SMTP
# command may take ``submit.TIMEOUT``), so the worker never sends it beside the request
FIRST_ATTEMPT_LEASE = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: dict[str, Any]


class RetryLater(Exception):
    """Recipients are still pending: the outbox tries again after its back-off."""


def _problem(status: int, title: str, detail: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "errors": errors}


class Sender:
    def __init__(self, settings: Settings, db: Database, pipeline: Pipeline) -> None:
        self.settings = settings
        self.db = db
        self.pipeline = pipeline
        self.box = SecretBox(settings.secret_keys)
        self._hostname: str | None = None
        self._inflight: set[asyncio.Task[Answer]] = set()

    async def _local_hostname(self) -> str:
        if self._hostname is None:
            self._hostname = await asyncio.to_thread(lambda: self.settings.hostname)
        return self._hostname

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.wait(list(self._inflight))

    # ------------------------------------------------------------------ the request
    async def send(self, req: SendRequest, *, idempotency_key: str | None = None,
                   request_hash: str = "") -> Answer:
        # shielded: a client that hangs up must not cut a submission or its record short
        task = asyncio.get_running_loop().create_task(
            self._send(req, idempotency_key, request_hash))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def _send(self, req: SendRequest, key: str | None, request_hash: str) -> Answer:
        if key is not None:
            replay = await self.db.run(self._replay, req.user_id, key, request_hash)
            if replay is not None:
                return replay
        prepared = await self.db.run(prepare, self.db, self.settings, self.pipeline.blobs, req)
        begun = await self.db.run(self._begin, prepared, key, request_hash)
        if isinstance(begun, Answer):
            return begun
        send_id, job = begun
        result: Result | None = None
        reason = ""
        try:
            result = await self._submit(prepared.mailbox, prepared.auth, prepared.sender,
                                         list(prepared.recipients), prepared.built)
        except MailboxProblem as exc:
            await self.db.run(self._abandon, send_id, job)
            metrics.count_send("mailbox")
            log.info("send_mailbox_problem", user=req.user_id, account=prepared.mailbox.account_id,
                     reason=exc.reason)
            raise Conflict(f"from_mailbox: mailbox {prepared.mailbox.account_id} "
                           f"({prepared.mailbox.username}) cannot send: {exc.reason}") from None
        except Unreachable as exc:
            reason = exc.reason
        if result is not None and not result.accepted and not result.deferred:
            answer = self._refusal(prepared, result)
            await self.db.run(self._refused, send_id, job, result, answer)
            metrics.count_send("refused")
            log.info("send_refused", user=req.user_id, send=send_id, detail=answer.body["detail"])
            return answer
        out = await self.pipeline.file_composed(
            prepared.built.copy, user_id=prepared.user_id, chosen=prepared.chosen,
            then=lambda s, o: self._record(s, send_id, job, result, reason, o))
        if out.message_id is None:  # not filed (a database hiccup): record it; the job files it
            await self.db.write(self._record, send_id, job, result, reason, None)
        answer = await self.db.run(self._answer_of, send_id)
        metrics.count_send(answer.body["status"])
        log.info("send_outcome", user=req.user_id, send=send_id, status=answer.body["status"],
                 message=answer.body["id"], reason=reason or None)
        return answer

    def _replay(self, user_id: int, key: str, request_hash: str) -> Answer | None:
        with self.db.read() as s:
            send = s.scalar(select(Send).where(Send.user_id == user_id,
                                               Send.idempotency_key == key))
            if send is None:
                return None
            if send.request_hash != request_hash:
                raise Invalid("Idempotency-Key: this key was used for a different request")
            if send.response is None:
                raise Conflict("Idempotency-Key: the first request with this key is still "
                               "being sent; repeat it in a moment")
            return Answer(int(send.response["status_code"]), dict(send.response["body"]))

    def _begin(self, p: Prepared, key: str | None, request_hash: str) -> tuple[int, outbox.Job] | Answer:
        try:
            with self.db.transaction() as s:
                send = Send(user_id=p.user_id, account_id=p.mailbox.account_id,
                            rfc_message_id=p.built.message_id, envelope_from=p.sender,
                            pending=list(p.recipients), accepted=[], refused=[],
                            status="sending", raw=p.built.copy, attempts=0,
                            tracked_raw=p.built.sent if p.built.tracked else None,
                            link_kind=p.chosen[0] if p.chosen else None,
                            link_id=p.chosen[1] if p.chosen else None,
                            idempotency_key=key, request_hash=request_hash)
                s.add(send)
                s.flush()
                if p.tracking is not None:
                    hits.create(s, p.tracking, list(p.built.links), send_id=send.id,
                                user_id=p.user_id, company_id=p.company_id)
                job = outbox.add_claimed(s, KIND, {"send_id": send.id, "user_id": p.user_id},
                                         lease=FIRST_ATTEMPT_LEASE)
                return send.id, job
        except IntegrityError:
            if key is None:
                raise
            replay = self._replay(p.user_id, key, request_hash)  # a concurrent first request
            if replay is None:
                raise
            return replay

    def _abandon(self, send_id: int, job: outbox.Job) -> None:
        """Nothing was sent and nothing is kept: the request may be made again."""
        with self.db.transaction() as s:
            s.execute(delete(OutboxJob).where(OutboxJob.id == job.id))
            s.execute(delete(Send).where(Send.id == send_id))

    def _refusal(self, p: Prepared, result: Result) -> Answer:
        errors = [{"loc": p.fields.get(a, "to").replace("]", "").split("["), "msg": reply}
                  for a, reply in result.refused.items()]
        first = next(iter(result.refused.values()), "")
        detail = (f"the submission server {p.mailbox.host} refused the message: {first}" if
                  len(set(result.refused.values())) == 1 else
                  f"the submission server {p.mailbox.host} refused every recipient: " + "; ".join(
                      f"{a}: {r}" for a, r in result.refused.items()))
        return Answer(422, _problem(422, "Unprocessable Content", detail[:2000], errors))

    def _refused(self, send_id: int, job: outbox.Job, result: Result, answer: Answer) -> None:
        with self.db.transaction() as s:
            send = s.get(Send, send_id)
            assert send is not None
            send.status, send.raw, send.pending, send.attempts = "refused", b"", [], 1
            send.tracked_raw = None
            send.refused = [{"address": a, "reply": r} for a, r in result.refused.items()]
            send.last_error = str(answer.body["detail"])
            send.response = {"status_code": answer.status_code, "body": answer.body}
            send.updated_at = utcnow()
            outbox.complete_in(s, job)

    # ------------------------------------------------------------------ recording
    def _record(self, s: Session, send_id: int, job: outbox.Job | None, result: Result | None,
                reason: str, out: Outcome | None) -> None:
        """One attempt's outcome (``result``, or ``reason`` when the server was not reached;
        neither: the message is only being filed), in the transaction that filed the
        message (``out``) — or its own. Webhooks fire when the send reaches its end, the
        sent-folder copy is queued once the message is both sent and filed."""
        send = s.get(Send, send_id)
        if send is None:
            return
        before = send.status
        newly_filed = out is not None and out.message_id is not None and send.message_id is None
        if newly_filed:
            assert out is not None
            send.message_id = out.message_id
        first_transmission = False
        if result is not None or reason:
            first_transmission = _apply(send, result, reason, utcnow())
            if result is not None and result.accepted:
                hits.transmitted(s, send.id, send.updated_at)  # tracking counts from here
        elif send.message_id is not None and not send.pending:
            send.raw = b""  # filed at last: the message keeps its bytes
        s.flush()
        if send.response is None and send.status != "sending":
            code = 201 if send.status == "sent" else 202
            send.response = {"status_code": code, "body": _body(s, send)}
        if (send.message_id is not None and send.sent_at is not None and send.account_id is not None
                and (first_transmission or newly_filed)):
            outbox.enqueue(s, SENT_COPY_KIND, {"send_id": send.id, "user_id": send.user_id,
                                               "account_id": send.account_id,
                                               "message_id": send.message_id})
        if send.status in ("sent", "failed") and send.status != before and not send.pending:
            _event(s, send)
        if job is not None:
            if send.message_id is None and send.status != "refused":
                outbox.retry_in(s, job, "sent but not filed yet", seconds=FILE_RETRY)
            elif send.pending:
                outbox.retry_in(s, job, send.last_error or reason)
            else:
                outbox.complete_in(s, job)

    def _answer_of(self, send_id: int) -> Answer:
        with self.db.read() as s:
            send = s.get(Send, send_id)
            assert send is not None
            body = _body(s, send)
            return Answer(201 if body["status"] == "sent" else 202, body)

    # ------------------------------------------------------------------ the outbox
    async def run_job(self, payload: dict[str, Any]) -> None:
        try:
            send_id = int(payload["send_id"])
        except (KeyError, TypeError, ValueError):
            raise PermanentFailure(f"malformed send job: {payload!r}") from None
        state = await self.db.run(self._job_state, send_id)
        if state is None:
            return  # deleted with its message or its user; or nothing left to do
        send, mailbox, auth, failure = state
        result: Result | None = None
        reason = failure
        if send.pending and not failure:
            try:
                result = await self._submit(mailbox, auth, send.envelope_from, list(send.pending),
                                            send.tracked_raw or mime.without_bcc(send.raw))
            except (MailboxProblem, Unreachable) as exc:
                reason = exc.reason
        if failure:
            await self.db.write(self._give_up, send.id, failure)
        elif send.message_id is None:
            out = await self.pipeline.file_composed(
                send.raw, user_id=send.user_id,
                chosen=(send.link_kind, send.link_id) if send.link_kind and send.link_id else None,
                then=lambda s, o: self._record(s, send.id, None, result, reason, o))
            if out.message_id is None:
                await self.db.write(self._record, send.id, None, result, reason, None)
                raise RetryLater(f"the sent message could not be filed yet: {out.reason}")
        else:
            await self.db.write(self._record, send.id, None, result, reason, None)
        status = await self.db.run(self._status, send.id)
        metrics.count_send(status or "gone")
        log.info("send_retried", send=send.id, status=status, reason=reason or None)
        if status == "queued":
            raise RetryLater(reason or "recipients still pending")
        if status == "failed":
            raise PermanentFailure(failure or reason or "refused")

    def _job_state(self, send_id: int) -> tuple[Send, context.Mailbox | None, Auth | None, str] | None:
        with self.db.read() as s:
            send = s.get(Send, send_id)
            if send is None or send.status in ("refused", "failed") or (
                    not send.pending and send.message_id is not None):
                return None
            s.expunge(send)
            if not send.pending:
                return send, None, None, ""
            user = s.get(User, send.user_id)
            if user is None or user.disabled:
                return send, None, None, "the user was disabled"
            if send.account_id is None:
                return send, None, None, "the mailbox it was sent from was removed"
            if utcnow() - send.created_at >= GIVE_UP:
                return send, None, None, (f"gave up after {send.attempts} attempts over "
                                          f"{GIVE_UP.days} days: {send.last_error}")
            try:
                mailbox = context.mailbox_for(s, user, send.account_id)
            except BccdError as exc:
                return send, None, None, str(exc)
            return send, mailbox, load_auth(s, self.box, mailbox.account_id), ""

    def _give_up(self, s: Session, send_id: int, reason: str) -> None:
        send = s.get(Send, send_id)
        if send is None:
            return
        send.refused = [*send.refused, *({"address": a, "reply": reason} for a in send.pending)]
        send.pending, send.status, send.last_error, send.raw = [], "failed", reason, b""
        send.tracked_raw = None
        send.updated_at = utcnow()
        s.flush()
        _event(s, send)

    def _status(self, send_id: int) -> str | None:
        with self.db.read() as s:
            return s.scalar(select(Send.status).where(Send.id == send_id))

    async def _submit(self, mailbox: context.Mailbox | None, auth: Auth | None, sender: str,
                      recipients: list[str], data: mime.Built | bytes) -> Result:
        assert mailbox is not None and auth is not None
        raw = data.sent if isinstance(data, mime.Built) else data
        utf8 = (not sender.isascii()) or any(not r.isascii() for r in recipients)
        account_id = mailbox.account_id

        def keep(new: OAuth2Auth) -> None:  # a refreshed token is stored before it is used
            with self.db.transaction() as s:
                save_auth(s, self.box, account_id, new)

        def reload() -> Auth:
            with self.db.read() as s:
                return load_auth(s, self.box, account_id)

        return await submit(mailbox, auth, keep=keep, reload=reload, sender=sender,
                            recipients=recipients, data=raw, smtputf8=utf8,
                            local_hostname=await self._local_hostname())


def _apply(send: Send, result: Result | None, reason: str, now: dt.datetime) -> bool:
    """Fold one attempt into the send; True when the message went out for the first time."""
    send.attempts = (send.attempts or 0) + 1
    send.updated_at = now
    first = False
    if result is None:
        send.last_error = reason
    else:
        if result.accepted:
            send.accepted = [*send.accepted, *result.accepted]
            first = send.sent_at is None
            send.sent_at = send.sent_at or now
        if result.refused:
            send.refused = [*send.refused,
                            *({"address": a, "reply": r} for a, r in result.refused.items())]
        send.pending = [a for a in send.pending if a in result.deferred]
        send.last_error = "; ".join(f"{a}: {r}" for a, r in result.deferred.items())
    if send.pending:
        send.status = "queued"
    else:
        send.status = "sent" if send.accepted else "failed"
        send.tracked_raw = None  # the recipients' bytes are needed while someone is pending
        if send.message_id is not None:
            send.raw = b""  # filed: the message keeps its bytes
    return first


def _body(s: Session, send: Send) -> dict[str, Any]:
    thread_id = (s.scalar(select(Message.thread_id).where(Message.id == send.message_id))
                 if send.message_id is not None else None)
    body: dict[str, Any] = {"id": send.message_id, "message_id": send.rfc_message_id,
                            "thread_id": thread_id,
                            "status": "queued" if send.status == "sending" else send.status,
                            "refused": list(send.refused)}
    if send.status == "queued":
        body["reason"] = send.last_error
    return body


def _event(s: Session, send: Send) -> None:
    data = {**_body(s, send), "accepted": list(send.accepted), "attempts": send.attempts}
    if send.status == "failed":
        data["reason"] = send.last_error
    events.send_outcome(s, "message.sent" if send.status == "sent" else "message.send_failed",
                        data, user_id=send.user_id)
