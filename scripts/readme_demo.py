"""Put the real output of `make demo` into the README, between its ``demo-output`` markers.

    (time make demo) 2>&1 | tee runs/demo.log
    .venv/bin/python scripts/readme_demo.py runs/demo.log --readme README.md

Keeps every line of the log but the progress bars (tqdm's carriage-return updates), so the block shows
the stages with their times, the answered question, the table, the file paths and the wall time.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from vlp.files import replace_marked_block

PROGRESS = re.compile(r"\r|\d+/\d+ \[\d")  # a tqdm bar: "\r" updates, or "12/300 [00:04<..."


def transcript(log: str) -> list[str]:
    return [line.rstrip() for line in log.splitlines() if line.strip() and not PROGRESS.search(line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="the output of `make demo` (stdout and stderr)")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    lines = transcript(args.log.read_text(encoding="utf-8"))
    if not any(line.startswith("| task |") for line in lines):
        raise SystemExit(f"{args.log}: no demo table in it (did the demo finish?)")
    replace_marked_block(args.readme, "demo-output", "\n".join(["```", *lines, "```"]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
