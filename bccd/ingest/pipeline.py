"""The one ingest entry point both fronts call (STYLE: thin fronts, one pipeline).

``await pipeline.ingest(raw, source=Source.BCC, targets=…, envelope=…)`` → one
``Outcome`` per distinct target (SMTP path), and
``await pipeline.ingest_imap(raw, user_id=…, origin=…)`` → one ``Outcome`` (IMAP path),
``await pipeline.file_composed(raw, user_id=…, chosen=…, then=…)`` → one ``Outcome`` (a
message written in bccd, SPEC §12: the user's outgoing mail, source ``compose``, never
judged for authenticity — it never came from outside —, linked ``how = manual`` to the
entity it was written from, threaded by its In-Reply-To/References like any copy).
``build_pipeline(settings, db)`` makes the pipeline ``bccd serve`` and the commands use.

Stages, in order, each a named step with a human reason on refusal:

1. size and bounded parse (off the loop, under ``PARSE_BUDGET`` seconds);
2. strict From (``auth.sender``) — structural refusals are 550 5.7.1;
3. per target, the checks of ``ingest.copies`` in order: a pinned entity
   address finds its user by the From address; otherwise the From address must be the
   user's login or a confirmed alternate, else 550 5.7.1 with how to fix it — or, with
   ``auth.unverified = "quarantine"``, the copy is marked for quarantine. A user named by
   several recipients gets one copy (a pinned one wins);
4. authenticity (``auth.mode = dmarc``) once per message, off the loop — 550 5.7.26, or
   451 4.7.0 on DNS failure (a copy marked for quarantine that fails is refused the same
   way: never kept, never answered by mail);
5. forwarded-mail recovery (SPEC §4.3) once per message, off the loop;
   (IMAP: the direction of synced mail, ``_synced_direction`` — SPEC §7;)
6. filing (``ingest.filing.file_in``) by the database's group writer, or keeping it in
   quarantine (``ingest.holding.hold``); committed before the caller replies 250.
   ``release`` files a copy released from quarantine through the same filing path.

Nothing raises out of ``ingest``: every failure becomes an ``Outcome`` through the
taxonomy in ``ingest.outcome`` (unknown → 451 4.3.0). Refusals are recorded as
rejections (reason and verdicts, never the body) — and so are copies a company's setting
drops by their category (SPEC §5.10: accepted with 250, counted in
``bccd_messages_dropped_by_category_total``, the reason kept with the rejections); every
outcome is logged once (``copy_outcome`` / ``imap_outcome``) with the message's ``msg`` id
bound for every line of its unit of work, and counted and timed in ``bccd.metrics``.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn, TypeVar

import structlog

from bccd import metrics
from bccd.addresses import Addr, domain_of
from bccd.auth import results
from bccd.auth.authenticator import build_authenticator
from bccd.auth.sender import FromRefused, Mailbox, parse_from
from bccd.auth.verdict import SKIPPED, Authenticator, AuthVerdict, DnsTempError
from bccd.config import Settings
from bccd.ingest import copies, filing, forwarded, holding
from bccd.ingest.lookups import Lookups
from bccd.ingest.outcome import (
    Disposition,
    DnsTemporaryFailure,
    IngestError,
    MessageTooBig,
    NotAuthentic,
    Outcome,
    ProcessingTimeout,
    TemporaryError,
    classify,
)
from bccd.ingest.parse import Parsed, parse, parse_address_list
from bccd.ingest.recipients import company_user_for_sender
from bccd.ingest.types import Envelope, ImapOrigin, Source, Target, Turn
from bccd.log import get_logger
from bccd.replies import Reply
from bccd.store.blobs import Blobs, BlobStore
from bccd.store.db import Database
from bccd.store.models import Rejection, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# a message written in bccd: no verdict of its own (it never came from outside)
COMPOSED = AuthVerdict(verdict="none", reason="written in bccd, sent through the user's mailbox")
PARSE_BUDGET = 20.0   # seconds of parsing before a (temporary) 451
AUTH_BUDGET = 30.0

log = get_logger("bccd.ingest")

T = TypeVar("T")
U = TypeVar("U")


def _synced_sender(parsed: Parsed) -> Addr:
    """The sender of a synced message: its strict From, or failing that the first address
    the lenient parser finds (a mailbox holds whatever it holds; nothing is refused)."""
    try:
        mb = parse_from(parsed.from_values)
    except FromRefused:
        lenient = parse_address_list(parsed.from_values[:1])
        return lenient[0] if lenient else Addr("", "")
    return Addr(mb.email, mb.name)


def _synced_direction(raw: bytes, sender: Addr, own: set[str], origin: ImapOrigin
                      ) -> tuple[str, bool]:
    """SPEC §7 "Direction of synced mail" → (direction, unverified_sender). Anyone can put
    the user's address in From and send it to their mailbox, so a From of the user's is
    believed only from the account's sent folder (or Gmail's ``\\Sent`` label) or on the
    provider's own DMARC pass; elsewhere the message is incoming, marked unverified. Mail
    from anyone else is incoming, wherever it is."""
    if sender.email not in own:
        return "incoming", False
    if origin.sent or results.provider_dmarc_pass(raw, origin.authserv_ids,
                                                  domain_of(sender.email)):
        return "outgoing", False
    return "incoming", True


def _strict_from(parsed: Parsed) -> Mailbox:
    try:
        return parse_from(parsed.from_values)
    except FromRefused as exc:
        raise classify(exc) from None


def build_pipeline(settings: Settings, db: Database, *, authenticate: bool = True) -> Pipeline:
    """The pipeline over the configured blob store (``storage.blobs``);
    ``authenticate=False`` for paths that never judge authenticity (IMAP sync, quarantine
    release), which then need no resolver."""
    return Pipeline(settings, db, Blobs.of(settings),
                    authenticator=build_authenticator(settings) if authenticate else None)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: Blobs | BlobStore,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = Blobs.wrap(blobs)  # a bare file store: attachments go to files
        self.authenticator = authenticator
        self._inflight: set[asyncio.Future[list[Outcome]]] = set()
        self.lookups = Lookups(db, settings)

    async def recipient(self, address: str) -> Target | Reply:
        """RCPT: which Smart Bcc address ``address`` is (``recipients.resolve``), or the
        refusal; a read shared with concurrent RCPTs of the same address."""
        return await self.lookups.recipient(address)

    async def drain(self) -> None:
        """Wait for copies still being filed for clients that hung up."""
        if self._inflight:
            await asyncio.wait(list(self._inflight))

    # ------------------------------------------------------------------ SMTP
    async def ingest(
        self,
        raw: bytes,
        *,
        source: Source = Source.BCC,
        targets: Sequence[Target],
        envelope: Envelope,
    ) -> list[Outcome]:
        start = time.monotonic()
        raw_sha = hashlib.sha256(raw).hexdigest()
        # shielded: a client that hangs up (aiosmtpd then cancels handle_DATA) must not
        # cancel a commit half way, nor the logging and rejection records after it; the
        # task runs in a copy of this context with the message's id bound
        task = asyncio.get_running_loop().create_task(
            self._ingest(raw, raw_sha, source, targets, envelope), context=_unit_of_work(raw_sha))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            log.info("client_gone_while_filing", rcpts=len(targets))
            raise
        except Exception as exc:
            err = classify(exc)
            log.warning("ingest_failed", error=err.reason, detail=err.detail or repr(exc))
            return [Outcome.from_error(err) for _ in targets]
        finally:
            metrics.observe_ingest("bcc", time.monotonic() - start)

    async def _ingest(
        self, raw: bytes, raw_sha: str, source: Source, targets: Sequence[Target],
        envelope: Envelope,
    ) -> list[Outcome]:
        try:
            parsed, mailbox = await self._parse_with_from(raw)
        except IngestError as err:
            outs = [Outcome.from_error(err) for _ in targets]
            await self._record(targets, outs, envelope, None, None)
            return outs
        kept, outcomes = await self.lookups.shared(
            ("copies", tuple(targets), mailbox), self._copies, targets, mailbox)
        outcomes = dict(outcomes)  # shared with concurrent copies of the same sender: ours
        verdict: AuthVerdict | None = None
        original: forwarded.Original | None = None
        try:
            if kept:
                verdict = await self._authenticate(raw, mailbox, envelope)
            if any(not c.quarantine for c in kept):
                original = await forwarded.recover_async(
                    parsed, max_header_size=self.settings.smtp.max_header_size)
        except IngestError as err:
            for c in kept:
                outcomes[c.target] = Outcome.from_error(err)
                outcomes[c.target].extra["verdict"] = err.verdict
            kept = []
        for c in kept:
            assert verdict is not None
            if c.quarantine:  # authentic, but not (yet) the user's address (SPEC §4.4)
                outcomes[c.target] = await holding.hold(self.db, self.settings, holding.hold_request(
                    user_id=c.user_id, rcpt=c.target.rcpt, raw=raw, parsed=parsed,
                    mailbox=mailbox, verdict=verdict, envelope=envelope))
                continue
            req = filing.FileRequest(
                user_id=c.user_id, raw=raw, parsed=parsed, source=source,
                direction="outgoing", sender=Addr(mailbox.email, mailbox.name),
                auth=verdict, bcc_domain=self.settings.smtp.bcc_domain,
                raw_sha256=raw_sha, pinned=c.pinned, null_sender=envelope.mail_from == "",
            )
            if original is not None:  # SPEC §4.3: forwarded to the Smart Bcc address?
                own = await self.lookups.shared(("own", c.user_id), self._own_addresses, c.user_id)
                req = forwarded.as_original(req, original, own)
            outcomes[c.target] = await self._file(req)
        result = [outcomes[t] for t in targets]
        await self._record(targets, result, envelope, parsed, mailbox, verdict)
        return result

    def _copies(
        self, targets: Sequence[Target], mailbox: Mailbox
    ) -> tuple[list[copies.Copy], dict[Target, Outcome]]:
        with self.db.read_only() as s:
            return copies.copies(s, self.settings, targets, mailbox)

    async def release(self, raw: bytes, *, user_id: int, auth: AuthVerdict) -> Outcome:
        """File a copy released from quarantine (``ingest.holding``) through the normal
        filing path, as the user's outgoing mail from source ``bcc``; the verdict is the one
        recorded when the copy arrived. Idempotent: filing again is a duplicate."""
        try:
            parsed, mailbox = await self._parse_with_from(raw)
        except IngestError as err:
            return Outcome.from_error(err)
        req = filing.FileRequest(
            user_id=user_id, raw=raw, parsed=parsed, source=Source.BCC, direction="outgoing",
            sender=Addr(mailbox.email, mailbox.name), auth=auth,
            bcc_domain=self.settings.smtp.bcc_domain,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
        )
        return await self._file(req)

    # ------------------------------------------------------------------ IMAP
    async def ingest_imap(self, raw: bytes, *, user_id: int, origin: ImapOrigin,
                          turn: Turn | None = None) -> Outcome:
        """One message synced over IMAP; ``turn``: its place in its folder's
        ``FilingOrder``, passed on here once the copy is queued for the database (the
        caller passes it on if this ends before that)."""
        start = time.monotonic()
        raw_sha = hashlib.sha256(raw).hexdigest()
        with structlog.contextvars.bound_contextvars(msg=raw_sha[:16]):
            parsed_or_none: Parsed | None = None
            try:
                parsed, sender = await self._parse(raw, _synced_sender)
                parsed_or_none = parsed
                own = await self.lookups.shared(("own", user_id), self._own_addresses, user_id)
                direction, unverified = _synced_direction(raw, sender, own, origin)
                req = filing.FileRequest(
                    user_id=user_id, raw=raw, parsed=parsed, source=Source.IMAP,
                    direction=direction, sender=sender, auth=AuthVerdict(verdict="none",
                    reason="synced over IMAP"), bcc_domain=self.settings.smtp.bcc_domain,
                    raw_sha256=raw_sha, origin=origin, unverified_sender=unverified,
                )
                out = await self._file(req, turn)
            except Exception as exc:
                out = Outcome.from_error(classify(exc))
            log.info("imap_outcome", user=user_id, account=origin.account_id,
                     folder=origin.folder, uid=origin.uid, outcome=out.disposition.value,
                     reason=out.reason, message=out.message_id)
            if _category_drop(out):
                target = Target(f"imap:{origin.account_id}/{origin.folder}"[:320], user_id, 0)
                await self._keep_rejections("imap", [(target, out)], Envelope(), parsed_or_none)
        metrics.count_copies("imap", [_counted(out)])
        metrics.observe_ingest("imap", time.monotonic() - start)
        return out

    # ------------------------------------------------------------------ compose
    async def file_composed(
        self, raw: bytes, *, user_id: int, chosen: tuple[str, int] | None = None,
        then: Callable[[Session, Outcome], None] | None = None,
    ) -> Outcome:
        """File a message the user wrote in bccd (module docstring); ``then(session,
        outcome)`` runs in the filing's transaction (the send record commits with it)."""
        raw_sha = hashlib.sha256(raw).hexdigest()
        with structlog.contextvars.bound_contextvars(msg=raw_sha[:16]):
            try:
                parsed, mailbox = await self._parse_with_from(raw)
                req = filing.FileRequest(
                    user_id=user_id, raw=raw, parsed=parsed, source=Source.COMPOSE,
                    direction="outgoing", sender=Addr(mailbox.email, mailbox.name),
                    auth=COMPOSED, bcc_domain=self.settings.smtp.bcc_domain,
                    raw_sha256=raw_sha, chosen=chosen)
                digests: filing.Digests = await self.db.run(filing.put_blobs, self.blobs, req) \
                    if parsed.attachments else ()
                out = await self.db.submit(filing.file_then, req, digests, then,
                                           size=len(raw))
            except Exception as exc:
                err = classify(exc)
                log.warning("file_failed", user=user_id, error=err.reason, detail=err.detail)
                out = Outcome.from_error(err)
            log.info("compose_outcome", user=user_id, outcome=out.disposition.value,
                     reason=out.reason or None, message=out.message_id, thread=out.thread_id)
        metrics.count_copies("compose", [_counted(out)])
        return out

    def _own_addresses(self, user_id: int) -> set[str]:
        with self.db.read_only() as s:
            return filing.user_addresses(s, user_id)

    # ------------------------------------------------------------------ stages
    async def _parse(self, raw: bytes, then: Callable[[Parsed], U]) -> tuple[Parsed, U]:
        """The parse, and ``then`` of it, in one worker thread."""
        if len(raw) > self.settings.smtp.max_message_size:
            raise MessageTooBig()
        limit = self.settings.smtp.max_header_size

        def work() -> tuple[Parsed, U]:
            parsed = parse(raw, max_header_size=limit)
            return parsed, then(parsed)

        return await self._in_thread(work)

    async def _parse_with_from(self, raw: bytes) -> tuple[Parsed, Mailbox]:
        """``_parse`` and the strict From (``SenderRefused`` if it is not one mailbox)."""
        return await self._parse(raw, _strict_from)

    @staticmethod
    async def _in_thread(fn: Callable[[], T]) -> T:
        ctx = contextvars.copy_context()
        fut = asyncio.get_running_loop().run_in_executor(None, ctx.run, fn)
        try:
            return await asyncio.wait_for(fut, PARSE_BUDGET)
        except TimeoutError:
            raise ProcessingTimeout(detail="parse budget exceeded") from None

    async def _authenticate(self, raw: bytes, mailbox: Mailbox, env: Envelope) -> AuthVerdict:
        """SPEC §4.2, once per message. DNS and RSA/ed25519 work runs in a worker thread,
        never on the event loop; the log gets the detail, the peer one line."""
        if self.settings.auth.mode == "off":
            return _relay_results(SKIPPED, env)
        auth = self.authenticator
        if auth is None:  # fail closed: mode dmarc must never skip the check
            raise TemporaryError(detail="auth.mode = dmarc but no authenticator configured")

        def run() -> AuthVerdict:
            return auth.evaluate(raw, header_from=mailbox.email, client_ip=env.client_ip,
                                 helo=env.helo, mail_from=env.mail_from)

        ctx = contextvars.copy_context()
        try:
            verdict = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, ctx.run, run), AUTH_BUDGET)
        except DnsTempError as exc:
            self._dns_failure(mailbox, env, str(exc))
        except TimeoutError:
            self._over_budget(mailbox, env)
        return self._accept(verdict, mailbox, env)

    @staticmethod
    def _dns_failure(mailbox: Mailbox, env: Envelope, detail: str) -> NoReturn:
        log.warning("auth_dns_failure", sender=mailbox.email, client=env.client_ip,
                    detail=detail)
        raise DnsTemporaryFailure(detail=detail) from None

    @staticmethod
    def _over_budget(mailbox: Mailbox, env: Envelope) -> NoReturn:
        log.warning("auth_budget_exceeded", sender=mailbox.email, client=env.client_ip,
                    seconds=AUTH_BUDGET)
        raise DnsTemporaryFailure(detail="authentication budget exceeded") from None

    def _accept(self, verdict: AuthVerdict, mailbox: Mailbox, env: Envelope) -> AuthVerdict:
        verdict = _relay_results(verdict, env)
        # a pass is summed up on each copy's ``copy_outcome`` line; a failure gets its own
        # info line with the detail
        (log.debug if verdict.passed else log.info)(
            "auth_verdict", sender=mailbox.email, client=env.client_ip,
            verdict=verdict.verdict, dkim=verdict.dkim, spf=verdict.spf,
            dmarc=verdict.dmarc, arc=verdict.arc, signing_domains=list(verdict.dkim_domains),
            reason=verdict.reason)
        if not verdict.passed:
            raise NotAuthentic(verdict.reason, verdict=verdict.as_dict())
        return verdict

    async def _file(self, req: filing.FileRequest, turn: Turn | None = None) -> Outcome:
        try:
            digests: filing.Digests = await self.db.run(filing.put_blobs, self.blobs, req) \
                if req.parsed.attachments else ()
            if turn is not None:
                await turn.wait()
            committed = self.db.submit(filing.file_in, req, digests, size=len(req.raw))
            if turn is not None:
                turn.done()
            return await committed
        except Exception as exc:
            err = classify(exc)
            log.warning("file_failed", user=req.user_id, error=err.reason, detail=err.detail)
            return Outcome.from_error(err)

    async def _record(
        self,
        targets: Sequence[Target],
        outcomes: Sequence[Outcome],
        env: Envelope,
        parsed: Parsed | None,
        mailbox: Mailbox | None,
        verdict: AuthVerdict | None = None,
    ) -> None:
        metrics.count_copies("bcc", [_counted(o) for o in outcomes])
        refused = []
        kept = []
        for t, o in zip(targets, outcomes, strict=True):
            log.info(
                "copy_outcome", rcpt=t.rcpt, user=t.user_id, outcome=o.disposition.value,
                reply=str(o.reply), reason=o.reason, detail=o.detail or None,
                message=o.message_id, thread=o.thread_id,
                message_id=parsed.message_id if parsed else None, client=env.client_ip,
                sender=mailbox.email if mailbox else None, **_auth_summary(o, verdict),
            )
            if o.disposition is Disposition.REFUSED:
                refused.append((t, o))
            elif _category_drop(o):
                kept.append((t, o))
        await self._keep_rejections("bcc", [*refused, *kept], env, parsed, mailbox)

    async def _keep_rejections(self, source: str, rows: list[tuple[Target, Outcome]],
                               env: Envelope, parsed: Parsed | None,
                               mailbox: Mailbox | None = None) -> None:
        """Record refused copies — and copies dropped by their category, also counted —
        as rejections (never fails the copy: a failure to record is logged)."""
        for _, o in rows:
            if _category_drop(o):
                metrics.dropped_by_category(source, str(o.extra["category"]))
        if not rows:
            return
        try:
            await self.db.run(self._store_rejections, rows, env, parsed, mailbox)
        except Exception as exc:
            log.warning("rejection_not_recorded", error=repr(exc))

    def _store_rejections(
        self,
        refused: list[tuple[Target, Outcome]],
        env: Envelope,
        parsed: Parsed | None,
        mailbox: Mailbox | None,
    ) -> None:
        with self.db.transaction() as s:
            for t, o in refused:
                user_id = t.user_id
                if user_id is None and mailbox is not None:
                    user_id = company_user_for_sender(s, t.company_id, mailbox.email)
                if user_id is not None and s.get(User, user_id) is None:
                    user_id = None
                s.add(Rejection(
                    user_id=user_id, recipient=t.rcpt, mail_from=env.mail_from[:320],
                    from_header=(parsed.from_values[0] if parsed and parsed.from_values else "")[:2000],
                    client_ip=env.client_ip, message_id=parsed.message_id if parsed else None,
                    code=f"{o.reply.code} {o.reply.enhanced}", reason=o.reason,
                    auth=o.extra.get("verdict") or {},
                ))


def _category_drop(outcome: Outcome) -> bool:
    """Dropped by the company's setting for its category (SPEC §5.10), not blocked."""
    return outcome.disposition is Disposition.DROPPED and "category" in outcome.extra


def _unit_of_work(raw_sha: str) -> contextvars.Context:
    """A copy of the caller's context with ``msg`` (the message's id in the log) bound."""
    ctx = contextvars.copy_context()
    ctx.run(structlog.contextvars.bind_contextvars, msg=raw_sha[:16])
    return ctx


def _counted(outcome: Outcome) -> tuple[str, str]:
    """(disposition, reply code) — the labels ``bccd.metrics`` counts a copy by."""
    return outcome.disposition.value, f"{outcome.reply.code} {outcome.reply.enhanced}".strip()


def _auth_summary(outcome: Outcome, verdict: AuthVerdict | None) -> dict[str, str | None]:
    """The verdict a copy was judged by (the one that refused it, or the message's), in
    brief for its ``copy_outcome`` line; ``None`` values when it was decided before."""
    refused_by = outcome.extra.get("verdict")
    if refused_by:
        return {k: refused_by.get(v) for k, v in _AUTH_FIELDS}
    if verdict is None or outcome.disposition is Disposition.REFUSED:  # refused before
        return dict.fromkeys(("auth", "dkim", "spf", "dmarc"))
    return {"auth": verdict.verdict, "dkim": verdict.dkim, "spf": verdict.spf,
            "dmarc": verdict.dmarc}


_AUTH_FIELDS = (("auth", "verdict"), ("dkim", "dkim"), ("spf", "spf"), ("dmarc", "dmarc"))


def _relay_results(verdict: AuthVerdict, env: Envelope) -> AuthVerdict:
    """SPEC §3: ``Authentication-Results`` are believed from trusted relays only. The SMTP
    front puts a trusted relay's in ``env.trusted_results``; whatever the message itself
    claims (the authenticator reads every header) is replaced by that — or dropped."""
    extra = {k: v for k, v in verdict.extra.items() if k != "trusted_results"}
    if env.trusted_results:
        extra["trusted_results"] = list(env.trusted_results)
    return verdict if extra == verdict.extra else replace(verdict, extra=extra)
