"""Where the test suite's time goes: ``python bench/test_times.py TIMES.jsonl [--workers 2]``.

Run (part of) the suite with ``AUDIOBOOK_TEST_TIMES=TIMES.jsonl`` set (tests/conftest.py then logs each
test's wall time and CPU time), then sum it up here: per file, the slowest tests, and the time the
files would take on ``--workers`` processes (``make test``'s pytest-xdist, a file per process),
from their CPU times (an idle machine) and from their wall times (this run's machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict


def makespan(costs: list[float], workers: int) -> float:
    """The end of the last file when each goes to the least busy worker, longest first."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in open(args.log, encoding="utf-8") if line.strip()]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in rows:
        f = files[r["test"].split("::")[0]]
        f[0] += r["wall_s"]
        f[1] += r["cpu_s"]
        f[2] += 1
    print(f"{'file':<40} {'tests':>5} {'wall s':>8} {'cpu s':>8}")
    for name, (wall, cpu, n) in sorted(files.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<40} {n:>5} {wall:>8.1f} {cpu:>8.1f}")
    print("\nslowest tests by CPU time:")
    for r in sorted(rows, key=lambda r: -r["cpu_s"])[:args.top]:
        print(f"  {r['cpu_s']:>7.1f} cpu s {r['wall_s']:>7.1f} wall s  {r['test']}")
    walls, cpus = [v[0] for v in files.values()], [v[1] for v in files.values()]
    print(f"\n{len(rows)} tests: {sum(walls) / 60:.1f} min wall, {sum(cpus) / 60:.1f} min CPU in all")
    print(f"on {args.workers} processes, a file each: {makespan(cpus, args.workers) / 60:.1f} min from CPU times "
          f"(idle), {makespan(walls, args.workers) / 60:.1f} min from this run's wall times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
