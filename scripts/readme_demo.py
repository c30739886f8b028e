"""Run ``dataprune demo`` and put its table into README.md (between the demo markers), so the README
shows exactly what the demo prints on this software stack.

    python scripts/readme_demo.py            # runs the demo into runs/readme-demo, then edits README.md
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- demo table: begin (scripts/readme_demo.py) -->", "<!-- demo table: end -->"


def main() -> int:
    out = os.path.join(ROOT, "runs", "readme-demo")
    t0 = time.perf_counter()
    printed = subprocess.run([sys.executable, "-m", "dataprune", "demo", "--out", out, "--force", "--quiet"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    seconds = time.perf_counter() - t0
    table = "\n".join(line for line in printed.splitlines() if line.startswith("|"))
    full = re.search(r"Full data \(ratio 0\): ([0-9.]+)", printed)
    block = (f"{BEGIN}\n```\n{table}\n```\n\nFull data: {full.group(1) if full else '?'}. "
             f"This run: {seconds:.0f} s on {os.cpu_count()} CPU core(s).\n{END}")
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    with open(path, "w") as f:
        f.write(text[:start] + block + text[stop:])
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
