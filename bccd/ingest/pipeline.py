"""The one ingest entry point both fronts call (STYLE: thin fronts, one pipeline).

``await pipeline.ingest(raw, source=Source.BCC, targets=…, envelope=…)`` → one
``Outcome`` per distinct target (SMTP path), and
``await pipeline.ingest_imap(raw, user_id=…, origin=…)`` → one ``Outcome`` (IMAP path).

Stages, in order, each a named step with a human reason on refusal:

1. size and bounded parse (off the loop, under ``PARSE_BUDGET`` seconds);
2. strict From (``auth.sender``) — structural refusals are 550 5.7.1;
3. per target: the From address must be the user's login or a confirmed alternate
   (a pinned entity address finds its user this way), else 550 5.7.1 with how to fix it —
   or, with ``auth.unverified = "quarantine"``, the copy is marked for quarantine;
4. authenticity (``auth.mode = dmarc``) once per message, off the loop — 550 5.7.26, or
   451 4.7.0 on DNS failure (a copy marked for quarantine that fails is refused the same
   way: never kept, never answered by mail);
5. filing (``ingest.store.file_copy``) in the database threads, or keeping it in
   quarantine (``ingest.quarantine.hold``); committed before the caller replies 250.
   ``release`` files a copy released from quarantine through the same filing path.

Nothing raises out of ``ingest``: every failure becomes an ``Outcome`` through the
taxonomy in ``ingest.outcome`` (unknown → 451 4.3.0). Refusals are recorded as
rejections (reason and verdicts, never the body) and every outcome is logged once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

from bccd import metrics
from bccd.auth.sender import Mailbox, parse_from
from bccd.auth.verdict import SKIPPED, AuthVerdict, DnsTempError
from bccd.config import Settings
from bccd.ingest import forwarded, quarantine, store
from bccd.ingest.lookups import Lookups
from bccd.ingest.outcome import (
    Disposition,
    DnsTemporaryFailure,
    IngestError,
    MessageTooBig,
    NotAuthentic,
    Outcome,
    ProcessingTimeout,
    SenderRefused,
    TemporaryError,
    UnknownRecipient,
    classify,
)
from bccd.ingest.parse import Addr, Parsed, parse, parse_address_list
from bccd.ingest.recipients import company_user_for_sender, disabled_user_for_sender
from bccd.ingest.types import Envelope, ImapOrigin, Source, Target, Turn
from bccd.log import get_logger
from bccd.smtp.replies import Reply
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.models import Rejection, User

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
    except SenderRefused:
        lenient = parse_address_list(parsed.from_values[:1])
        return lenient[0] if lenient else Addr("", "")
    return Addr(mb.email, mb.name)


@dataclass(slots=True)
class _Copy:
    target: Target
    user_id: int
    pinned: tuple[str, int] | None
    quarantine: bool = False   # not the user's address: kept in quarantine if authentic


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        authenticator: object | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.authenticator = authenticator
        self.metrics: object | None = None
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
        # shielded: a client that hangs up (aiosmtpd then cancels handle_DATA) must not
        # cancel a commit half way, nor the logging and rejection records after it
        task = asyncio.ensure_future(self._ingest(raw, source, targets, envelope))
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

    async def _ingest(
        self, raw: bytes, source: Source, targets: Sequence[Target], envelope: Envelope
    ) -> list[Outcome]:
        raw_sha = hashlib.sha256(raw).hexdigest()
        try:
            parsed, mailbox = await self._parse_with_from(raw)
        except IngestError as err:
            outs = [Outcome.from_error(err) for _ in targets]
            await self._record(targets, outs, envelope, None, None)
            return outs
        copies, outcomes = await self.lookups.shared(
            ("copies", tuple(targets), mailbox), self._resolve_copies, targets, mailbox)
        outcomes = dict(outcomes)  # shared with concurrent copies of the same sender: ours
        verdict: AuthVerdict | None = None
        if copies:
            try:
                verdict = await self._authenticate(raw, mailbox, envelope)
            except IngestError as err:
                for c in copies:
                    outcomes[c.target] = Outcome.from_error(err)
                    outcomes[c.target].extra["verdict"] = err.verdict
                copies = []
        for c in copies:
            assert verdict is not None
            if c.quarantine:  # authentic, but not (yet) the user's address (SPEC §4.4)
                outcomes[c.target] = await self._hold(c, raw, parsed, mailbox, verdict, envelope)
                continue
            req = store.FileRequest(
                user_id=c.user_id, raw=raw, parsed=parsed, source=source,
                direction="outgoing", sender=Addr(mailbox.email, mailbox.name),
                auth=verdict, bcc_domain=self.settings.smtp.bcc_domain,
                raw_sha256=raw_sha, pinned=c.pinned,
            )
            original = await forwarded.recover_async(
                parsed, max_header_size=self.settings.smtp.max_header_size)
            if original is not None:  # SPEC §4.3: forwarded to the Smart Bcc address?
                own = await self.lookups.shared(("own", c.user_id), self._own_addresses, c.user_id)
                req = forwarded.as_original(req, original, own)
            outcomes[c.target] = await self._file(req)
        result = [outcomes[t] for t in targets]
        await self._record(targets, result, envelope, parsed, mailbox, verdict)
        return result

    def _resolve_copies(
        self, targets: Sequence[Target], mailbox: Mailbox
    ) -> tuple[list[_Copy], dict[Target, Outcome]]:
        """Which user each target's copy belongs to; refusals for the rest.

        A user named by their own address and by a pinned address gets one copy, with
        the pinned link (SPEC §5.6).
        """
        copies: dict[int, _Copy] = {}
        outcomes: dict[Target, Outcome] = {}
        with self.db.read_only() as s:
            for t in targets:
                if t.pinned_kind is not None and t.pinned_id is not None:
                    uid = company_user_for_sender(s, t.company_id, mailbox.email)
                    if uid is None:
                        outcomes[t] = Outcome.from_error(
                            UnknownRecipient(f"{mailbox.email} is a disabled user")
                            if disabled_user_for_sender(s, t.company_id, mailbox.email)
                            else SenderRefused(
                                f"{mailbox.email} is not the address of a user of this company"))
                        continue
                    prev = copies.get(uid)
                    copies[uid] = _Copy(t, uid, (t.pinned_kind, t.pinned_id))
                    if prev is not None:
                        outcomes[prev.target] = _merged()
                    continue
                if mailbox.email not in store.user_addresses(s, t.user_id):
                    if self.settings.auth.unverified == "quarantine":
                        # decided after authenticity: only authentic copies are kept
                        if t.user_id in copies:
                            outcomes[t] = _merged()
                        else:
                            copies[t.user_id] = _Copy(t, t.user_id, None, quarantine=True)
                        continue
                    outcomes[t] = Outcome.from_error(self._not_users_address(s, t, mailbox))
                    continue
                if t.user_id in copies:
                    outcomes[t] = _merged()
                    continue
                copies[t.user_id] = _Copy(t, t.user_id, None)
        return list(copies.values()), outcomes

    def _not_users_address(self, s: object, t: Target, mailbox: Mailbox) -> IngestError:
        return SenderRefused(quarantine.not_confirmed_reason(mailbox.email))

    # ------------------------------------------------------------------ quarantine
    async def _hold(
        self, c: _Copy, raw: bytes, parsed: Parsed, mailbox: Mailbox, verdict: AuthVerdict,
        envelope: Envelope,
    ) -> Outcome:
        """Keep an authentic copy from an address that is not (yet) the user's (SPEC §4.4)."""
        return await quarantine.hold(self.db, self.settings, quarantine.hold_request(
            user_id=c.user_id, rcpt=c.target.rcpt, raw=raw, parsed=parsed, mailbox=mailbox,
            verdict=verdict, envelope=envelope))

    async def release(self, raw: bytes, *, user_id: int, auth: AuthVerdict) -> Outcome:
        """File a copy released from quarantine (``ingest.quarantine``) through the normal
        filing path, as the user's outgoing mail from source ``bcc``; the verdict is the one
        recorded when the copy arrived. Idempotent: filing again is a duplicate."""
        try:
            parsed, mailbox = await self._parse_with_from(raw)
        except IngestError as err:
            return Outcome.from_error(err)
        req = store.FileRequest(
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
        try:
            parsed, sender = await self._parse(raw, _synced_sender)
            own = await self.lookups.shared(("own", user_id), self._own_addresses, user_id)
            direction = "outgoing" if sender.email in own else "incoming"
            req = store.FileRequest(
                user_id=user_id, raw=raw, parsed=parsed, source=Source.IMAP,
                direction=direction, sender=sender, auth=AuthVerdict(verdict="none",
                reason="synced over IMAP"), bcc_domain=self.settings.smtp.bcc_domain,
                raw_sha256=hashlib.sha256(raw).hexdigest(), origin=origin,
            )
            out = await self._file(req, turn)
        except Exception as exc:
            out = Outcome.from_error(classify(exc))
        log.info("imap_outcome", user=user_id, account=origin.account_id, folder=origin.folder,
                 uid=origin.uid, outcome=out.disposition.value, reason=out.reason,
                 message=out.message_id)
        return out

    def _own_addresses(self, user_id: int) -> set[str]:
        with self.db.read_only() as s:
            return store.user_addresses(s, user_id)

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
        return await self._parse(raw, lambda parsed: parse_from(parsed.from_values))

    @staticmethod
    async def _in_thread(fn: Callable[[], T]) -> T:
        fut = asyncio.get_running_loop().run_in_executor(None, fn)
        try:
            return await asyncio.wait_for(fut, PARSE_BUDGET)
        except TimeoutError:
            raise ProcessingTimeout(detail="parse budget exceeded") from None

    async def _authenticate(self, raw: bytes, mailbox: Mailbox, env: Envelope) -> AuthVerdict:
        """SPEC §4.2, once per message. DNS and RSA/ed25519 work runs in a worker thread,
        never on the event loop; the log gets the detail, the peer one line."""
        if self.settings.auth.mode == "off":
            return _relay_results(SKIPPED, env)
        if self.authenticator is None:  # fail closed: mode dmarc must never skip the check
            raise TemporaryError(detail="auth.mode = dmarc but no authenticator configured")
        auth = self.authenticator
        loop = asyncio.get_running_loop()

        def run() -> AuthVerdict:
            return auth.evaluate(  # type: ignore[attr-defined, no-any-return]
                raw, header_from=mailbox.email, client_ip=env.client_ip,
                helo=env.helo, mail_from=env.mail_from,
            )

        try:
            verdict = await asyncio.wait_for(loop.run_in_executor(None, run), AUTH_BUDGET)
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

    async def _file(self, req: store.FileRequest, turn: Turn | None = None) -> Outcome:
        try:
            digests = await self.db.run(store.put_blobs, self.blobs, req) \
                if req.parsed.attachments else []
            if turn is not None:
                await turn.wait()
            committed = self.db.submit(store.file_in, req, digests, size=len(req.raw))
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
        metrics.record_outcomes(outcomes)
        refused = []
        for t, o in zip(targets, outcomes, strict=True):
            log.info(
                "copy_outcome", rcpt=t.rcpt, user=t.user_id or None, outcome=o.disposition.value,
                reply=str(o.reply), reason=o.reason, detail=o.detail or None,
                message=o.message_id, thread=o.thread_id,
                message_id=parsed.message_id if parsed else None, client=env.client_ip,
                sender=mailbox.email if mailbox else None, **_auth_summary(o, verdict),
            )
            if o.disposition is Disposition.REFUSED:
                refused.append((t, o))
        if not refused:
            return
        try:
            await self.db.run(self._store_rejections, refused, env, parsed, mailbox)
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
                user_id = t.user_id or None
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


def _merged() -> Outcome:
    from bccd.smtp import replies as R

    return Outcome(Disposition.DUPLICATE, R.STORED, reason="same user as another recipient")


def _relay_results(verdict: AuthVerdict, env: Envelope) -> AuthVerdict:
    """SPEC §3: ``Authentication-Results`` are believed from trusted relays only. The SMTP
    front puts a trusted relay's in ``env.trusted_results``; whatever the message itself
    claims (the authenticator reads every header) is replaced by that — or dropped."""
    extra = {k: v for k, v in verdict.extra.items() if k != "trusted_results"}
    if env.trusted_results:
        extra["trusted_results"] = list(env.trusted_results)
    return verdict if extra == verdict.extra else replace(verdict, extra=extra)
