"""Run every benchmark in turn (each prints its table and writes results/NAME.json).

    python benchmarks/run_all.py [NAME ...]

One at a time on purpose: they measure speed, and this machine has two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ORDER = ["ingest", "search", "filters", "hybrid", "switch", "finetune", "autopilot", "serve"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        print(f"unknown benchmarks: {', '.join(unknown)}; known: {', '.join(ORDER)}")
        return 2
    failed = []
    for name in names:
        if subprocess.run([sys.executable, str(ROOT / f"{name}.py")], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
