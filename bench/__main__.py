"""`make bench`: runs every bench/bench_<area>.py and prints one table.

Each module has `main()` (plain or async) returning rows (see bench/__init__.py);
`python -m bench source kustomize` runs a selection. Exits 1 when any benchmark failed or measured
nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

from bench import failed_row

HEADINGS = {
    "benchmark": "BENCHMARK",
    "value": "TIDE",
    "same_run": "COMPARED, SAME RUN",
    "published": "PUBLISHED, OTHER HARDWARE",
    "note": "NOTE",
}
COLUMNS = tuple(HEADINGS)


def run_module(name: str) -> list[dict[str, str]]:
    module = importlib.import_module(f"bench.{name}")
    result = module.main()
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return [{k: str(row.get(k, "")) for k in (*COLUMNS, "failed")} for row in result]


def print_table(rows: list[dict[str, str]]) -> None:
    widths = {c: max([len(HEADINGS[c])] + [len(r[c]) for r in rows]) for c in COLUMNS}
    line = "  ".join(HEADINGS[c].ljust(widths[c]) for c in COLUMNS)
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in COLUMNS))


def main(argv: list[str]) -> int:
    available = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    selected = [f"bench_{a}" if not a.startswith("bench_") else a for a in argv] or available
    rows: list[dict[str, str]] = []
    for name in selected:
        start = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            measured = run_module(name)
            if not measured:
                measured = [failed_row(name, "returned no figures")]
            rows += measured
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            rows.append({**failed_row(name, str(exc)[:160]), "same_run": "", "published": ""})
        print(f"bench: {name} took {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
    print_table(rows)
    failed = [r["benchmark"] for r in rows if r.get("failed")]
    if failed:
        print(f"bench: {len(failed)} failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
