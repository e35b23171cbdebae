"""Score a few NAB files through the CLI path and the shared NAB scorer.

Skips cleanly when ../shared (the NAB development set) is not present.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.detect.anomaly.evaluate import score_path

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAB = SHARED / "data" / "nab-dev"
SCORER = SHARED / "tools" / "nab_score.py"
FILES = [
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "artificialWithAnomaly/art_daily_jumpsup.csv",
]

pytestmark = pytest.mark.skipif(
    not (NAB.is_dir() and SCORER.is_file()), reason="../shared NAB data not present"
)


def test_nab_scorer_on_three_files(tmp_path: Path) -> None:
    out = tmp_path / "dairy_edge"
    for rel in FILES:
        score_path(NAB / "data" / rel, out / rel)
    subset = tmp_path / "subset.txt"
    subset.write_text("\n".join(FILES) + "\n")
    proc = subprocess.run(
        [sys.executable, str(SCORER), "--nab-root", str(NAB), "--subset", str(subset),
         "--profile", "standard", str(out)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("dairy_edge"))
    standard = float(line.split()[3])
    # These three windows are clear level shifts / spikes: the engine must find them.
    assert standard > 60.0, proc.stdout
