"""What the running parts of ``bccd serve`` share, passed in explicitly (never a global).

``Services`` holds the settings, the database, the ingest pipeline (with its blob store)
and how to ask whether SMTP listens (``/healthz``). ``bccd.service`` makes it; the HTTP
app and the background workers take it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bccd.config import Settings
from bccd.ingest.pipeline import Pipeline
from bccd.store.blobs import Blobs
from bccd.store.db import Database


def _not_listening() -> bool:
    return False


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    pipeline: Pipeline
    smtp_listening: Callable[[], bool] = field(default=_not_listening)

    @property
    def blobs(self) -> Blobs:
        return self.pipeline.blobs
