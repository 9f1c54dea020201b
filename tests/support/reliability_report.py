"""Figures of the reliability tests (docs/reliability.md is written from them).

``record(fault, **figures)`` prints one line and, when ``BCCD_RELIABILITY_REPORT`` names a
file, appends ``{"fault": …, **figures}`` to it as one JSON line (xdist workers append to
the same file; each line is one ``write``)."""

from __future__ import annotations

import json
import os
from typing import Any


def record(fault: str, **figures: Any) -> None:
    line = json.dumps({"fault": fault, **figures}, sort_keys=False)
    print(f"[reliability] {line}")
    path = os.environ.get("BCCD_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
