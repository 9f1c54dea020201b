"""Prometheus metrics (SPEC §9 ``/metrics``); every name is prefixed ``bccd_``.

The metric objects live here, in one private ``REGISTRY`` (not prometheus-client's
global default, whose unprefixed ``python_*`` collectors would break the naming rule);
process metrics are exported as ``bccd_process_*``.

Who feeds what:

- ``count_copies(source, [(disposition, code), …])`` — the ingest pipeline, once per
  message: ``bccd_messages_accepted_total{source, outcome}`` (stored, duplicate,
  quarantined, dropped) and ``bccd_messages_refused_total{source, code}`` (the reply,
  e.g. ``550 5.7.26``; 4xx codes are temporary refusals). Labels come from closed sets
  (the disposition enum and the reply catalogue) — never free text, so cardinality is
  bounded.
- ``dropped_by_category(source, category)`` — the pipeline, for each copy a company's
  setting drops (SPEC §5.10): ``bccd_messages_dropped_by_category_total{source, category}``
  (auto_reply, bulk, internal; they are also ``outcome="dropped"`` above).
- ``observe_ingest(source, seconds)`` — the pipeline times every message:
  ``bccd_ingest_seconds{source}`` (histogram, end-to-end per message: parse,
  authenticity, commit).
- ``webhook_delivered(result)`` — ``bccd_webhook_deliveries_total{result}`` (ok, failed).
- ``tracking_hit(what, kind, reason)`` / ``tracking_refused(why)`` — the public tracking
  endpoints (SPEC §13, ``web.tracking``): ``bccd_tracking_hits_total{what, kind, reason}``
  (reason: the code of the rule, ``tracking.rules``) and
  ``bccd_tracking_refused_total{why}`` for requests that recorded nothing
  (``tracking_reclassified``: ``bccd_tracking_reclassified_total``, the first click of a
  burst, counted as a person's until the next one).
- ``collect_db(db)`` (blocking; ``/metrics`` runs it through ``Database.run`` when its
  cached values are older than ``web.ops.DB_TTL``) refreshes the gauges read from the
  database: ``bccd_imap_accounts{state}`` and ``bccd_outbox_depth{kind}`` (pending jobs)
  with ``bccd_outbox_oldest_seconds``; ``bccd_metrics_db_reads_total`` counts its runs.

``render()`` → (body, content type) in the Prometheus text format. Failures to read the
database leave the gauges as they were and set ``bccd_metrics_db_up`` to 0.

Several SMTP processes (``smtp.workers``, ``bccd.smtp.workers``): ``bccd serve`` calls
``use_multiprocess(dir)`` before it starts anything; every process then keeps its values
in files there (prometheus_client's multiprocess mode) and ``render()``
sums counters and histograms over all of them. The gauges are set by the primary alone
(``mostrecent``: the last value written wins); ``bccd_process_*`` describe the primary.
A pending-jobs kind that empties is set to 0 rather than removed (a removed series would
live on in the files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import func, select

from bccd.store.models import ImapAccount, OutboxJob, utcnow

if TYPE_CHECKING:
    from bccd.store.db import Database

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series beside every counter
ACCEPTED_OUTCOMES = ("stored", "duplicate", "quarantined", "dropped", "skipped")
DROPPABLE_CATEGORIES = ("auto_reply", "bulk", "internal")
IMAP_STATES = ("active", "paused", "disabled")


def _define() -> None:
    """(Re)make every metric in a fresh ``REGISTRY``."""
    global REGISTRY, ACCEPTED, REFUSED, INGEST_SECONDS, IMAP_ACCOUNTS, OUTBOX_DEPTH
    global OUTBOX_OLDEST, WEBHOOKS, DB_UP, DB_READS, SENDS, TRACKING_HITS, TRACKING_REFUSED
    global TRACKING_RECLASSIFIED, CATEGORY_DROPS
    REGISTRY = CollectorRegistry(auto_describe=True)
    ProcessCollector(namespace="bccd", registry=REGISTRY)
    ACCEPTED = Counter("bccd_messages_accepted", "Copies accepted (250), by outcome",
                       ["source", "outcome"], registry=REGISTRY)
    REFUSED = Counter("bccd_messages_refused", "Copies refused, by reply code (4xx = temporary)",
                      ["source", "code"], registry=REGISTRY)
    CATEGORY_DROPS = Counter("bccd_messages_dropped_by_category",
                             "Copies accepted and not stored because the company drops their "
                             "category (automated_mail / internal_mail = drop)",
                             ["source", "category"], registry=REGISTRY)
    INGEST_SECONDS = Histogram(
        "bccd_ingest_seconds", "Time to decide and commit one message (parse, authenticity, store)",
        ["source"], registry=REGISTRY,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    )
    IMAP_ACCOUNTS = Gauge("bccd_imap_accounts", "Mailbox sync accounts, by state", ["state"],
                          registry=REGISTRY, multiprocess_mode="mostrecent")
    OUTBOX_DEPTH = Gauge("bccd_outbox_depth", "Pending outbox jobs, by kind", ["kind"],
                         registry=REGISTRY, multiprocess_mode="mostrecent")
    OUTBOX_OLDEST = Gauge("bccd_outbox_oldest_seconds", "Age of the oldest pending outbox job",
                          registry=REGISTRY, multiprocess_mode="mostrecent")
    WEBHOOKS = Counter("bccd_webhook_deliveries", "Webhook delivery attempts, by result",
                       ["result"], registry=REGISTRY)
    SENDS = Counter("bccd_send_attempts", "Attempts to send mail written in bccd through a "
                    "user's mailbox, by outcome (sent, queued, refused, failed, mailbox)",
                    ["outcome"], registry=REGISTRY)
    TRACKING_HITS = Counter("bccd_tracking_hits", "Hits on tracked mail's pixel and links, by "
                            "what (open, click), kind (human, machine) and the rule's reason",
                            ["what", "kind", "reason"], registry=REGISTRY)
    TRACKING_REFUSED = Counter("bccd_tracking_refused", "Tracking requests answered without "
                               "recording a hit: invalid (tampered, unknown key, expired), "
                               "unknown (no such message), rate_limited, busy, off (the "
                               "company's policy)", ["why"], registry=REGISTRY)
    TRACKING_RECLASSIFIED = Counter("bccd_tracking_reclassified", "Clicks counted as a "
                                    "person's until the next click of a burst made them a "
                                    "machine's", registry=REGISTRY)
    DB_UP = Gauge("bccd_metrics_db_up", "1 when the last scrape could read the database",
                  registry=REGISTRY, multiprocess_mode="mostrecent")
    DB_READS = Counter("bccd_metrics_db_reads", "Reads of the database for the gauges "
                       "(cached between scrapes, see bccd.web.ops)", registry=REGISTRY)
    for state in IMAP_STATES:
        IMAP_ACCOUNTS.labels(state).set(0)


REGISTRY: CollectorRegistry
ACCEPTED: Counter
REFUSED: Counter
CATEGORY_DROPS: Counter
INGEST_SECONDS: Histogram
IMAP_ACCOUNTS: Gauge
OUTBOX_DEPTH: Gauge
OUTBOX_OLDEST: Gauge
WEBHOOKS: Counter
SENDS: Counter
TRACKING_HITS: Counter
TRACKING_REFUSED: Counter
TRACKING_RECLASSIFIED: Counter
DB_UP: Gauge
DB_READS: Counter
_define()


def use_multiprocess(path: Path) -> None:
    """Keep every value in files under ``path`` from now on (prometheus_client's
    multiprocess mode), for this process and — through the environment — the processes it
    starts. Call it before any metric has changed: the metrics are made again."""
    global MULTIPROCESS, _combined
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    MULTIPROCESS, _combined = True, None
    _define()


def count_copies(source: str, copies: Iterable[tuple[str, str]]) -> None:
    """Count copies by (disposition, reply code): accepted ones by disposition, refused
    (and temporarily refused) ones by code."""
    for disposition, code in copies:
        if disposition in ACCEPTED_OUTCOMES:
            ACCEPTED.labels(source, disposition).inc()
        else:
            REFUSED.labels(source, code).inc()


def count_send(outcome: str) -> None:
    SENDS.labels(outcome).inc()


def tracking_hit(what: str, kind: str, reason: str) -> None:
    """A recorded hit; labels from closed sets (``tracking.rules.CODES``)."""
    TRACKING_HITS.labels(what, kind, reason).inc()


def tracking_refused(why: str) -> None:
    TRACKING_REFUSED.labels(why).inc()


def tracking_reclassified() -> None:
    TRACKING_RECLASSIFIED.inc()
def dropped_by_category(source: str, category: str) -> None:
    if category in DROPPABLE_CATEGORIES:
        CATEGORY_DROPS.labels(source, category).inc()


def observe_ingest(source: str, seconds: float) -> None:
    INGEST_SECONDS.labels(source).observe(seconds)


def webhook_delivered(ok: bool) -> None:
    WEBHOOKS.labels("ok" if ok else "failed").inc()


def collect_db(db: Database) -> None:
    """Refresh the database-backed gauges (blocking)."""
    DB_READS.inc()
    try:
        with db.read() as s:
            accounts = dict(s.execute(select(ImapAccount.state, func.count())
                                      .group_by(ImapAccount.state)).tuples().all())
            depth = dict(s.execute(select(OutboxJob.kind, func.count())
                                   .where(OutboxJob.state == "pending")
                                   .group_by(OutboxJob.kind)).tuples().all())
            oldest = s.scalar(select(func.min(OutboxJob.created_at))
                              .where(OutboxJob.state == "pending"))
    except Exception:  # the database may be away: say so, keep the last values
        DB_UP.set(0)
        return
    DB_UP.set(1)
    for state in {*IMAP_STATES, *accounts}:
        IMAP_ACCOUNTS.labels(state).set(int(accounts.get(state, 0)))
    for kind in _depth_kinds - depth.keys():
        OUTBOX_DEPTH.labels(kind).set(0)
    _depth_kinds.update(depth)
    for kind, n in depth.items():
        OUTBOX_DEPTH.labels(kind).set(int(n))
    if oldest is not None and oldest.tzinfo is None:  # pragma: no cover - UTCDateTime sets it
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    OUTBOX_OLDEST.set((utcnow() - oldest).total_seconds() if oldest is not None else 0)


_depth_kinds: set[str] = set()
_combined: CollectorRegistry | None = None


def _exposed() -> CollectorRegistry:
    global _combined
    if not MULTIPROCESS:
        return REGISTRY
    if _combined is None:
        from prometheus_client import multiprocess

        _combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(_combined)  # type: ignore[no-untyped-call]
        ProcessCollector(namespace="bccd", registry=_combined)
    return _combined


def render() -> tuple[bytes, str]:
    return generate_latest(_exposed()), CONTENT_TYPE_LATEST
