"""`make bench`: runs every bench/bench_<area>.py and prints one table.

Each module has `main()` (plain or async) returning rows of
{"benchmark", "value", "peer", "note"}; `python -m bench source kustomize` runs a selection.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

COLUMNS = ("benchmark", "value", "peer", "note")


def run_module(name: str) -> list[dict[str, str]]:
    module = importlib.import_module(f"bench.{name}")
    result = module.main()
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return [{k: str(row.get(k, "")) for k in COLUMNS} for row in result]


def print_table(rows: list[dict[str, str]]) -> None:
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in COLUMNS}
    line = "  ".join(c.upper().ljust(widths[c]) for c in COLUMNS)
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in COLUMNS))


def main(argv: list[str]) -> int:
    available = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    selected = [f"bench_{a}" if not a.startswith("bench_") else a for a in argv] or available
    rows: list[dict[str, str]] = []
    failed = 0
    for name in selected:
        start = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            rows += run_module(name)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed += 1
            traceback.print_exc()
            rows.append({"benchmark": name, "value": "FAILED", "peer": "", "note": str(exc)[:120]})
        print(f"bench: {name} took {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
