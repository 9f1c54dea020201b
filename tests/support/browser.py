"""Headless Chromium for the Mail page's tests (Playwright driving Debian's chromium).

- ``CHROMIUM`` (``BCCD_TEST_CHROMIUM`` or ``/usr/bin/chromium``) and ``ARGS``;
- ``needs_chromium``: the mark of a test that drives it (``.ci/run`` installs it; a
  machine without it skips those tests and says why);
- ``chromium()``: a browser, closed on exit — the module-scoped ``browser`` fixture of
  ``tests/integration/conftest.py`` is one per test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BCCD_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()
