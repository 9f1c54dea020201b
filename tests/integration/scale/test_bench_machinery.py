"""``bench.machinery`` runs end to end: each piece of the performance machinery and the
plain path it replaces file the same copies (every one stored) and answer the same RCPTs,
and a row is printed for each. The ratios themselves are for a quiet machine, not for a
test; only the direction of the single-flight row is certain enough to assert (twenty
calls share one read)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bench_machinery_prints_what_each_piece_buys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.machinery", "--messages", "40", "--lookups", "20",
         "--repeat", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^(.{22}) +\S+ +([\d.]+) +([\d.]+) +([\d.]+)x", out.stdout, re.M)}
    assert set(rows) == {"group writer", "direct statements", "single-flight lookups"}, out.stdout
    assert all(w > 0 and wo > 0 for w, wo, _ in rows.values())
    assert rows["single-flight lookups"][2] > 2
