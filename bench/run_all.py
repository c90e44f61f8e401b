"""All the benchmarks in one command; each figure with a target says PASS or MISS beside it.

    .venv/bin/python bench/run_all.py            # full: about 15-20 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # fewer runs and smaller loads: about 7 minutes
    .venv/bin/python bench/run_all.py --only overhead,export

Needs the Docker engine with grader-sandbox:cpu, PostgreSQL and Redis on 127.0.0.1 (scripts/test sets
them up); the peer section installs Otter-Grader from PyPI once, into ~/.cache/grader-bench. Exits 1
when a target was missed. Timings depend on the machine's load: it is printed beside every section;
re-run when it was high.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SECTIONS = ["overhead", "service", "export", "torch", "peer"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller loads")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated among {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="worker processes for the service benchmarks"
    )
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    quick = ["--quick"] if args.quick else []
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    )
    print(
        f"grader benchmarks {datetime.datetime.now().isoformat(timespec='seconds')} on {platform.node()}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Docker {docker.stdout.strip() or '?'}, "
        f"{common.load()}{', quick' if args.quick else ''}"
    )
    started = time.monotonic()
    reports, failures = [], []
    for section in chosen:
        try:
            if section == "overhead":
                import overhead

                reports.append(overhead.main(quick))
            elif section == "service":
                import service_load

                reports += service_load.main([*quick, "--concurrency", str(args.concurrency)])
            elif section == "export":
                import export

                reports.append(export.main(quick))
            elif section == "torch":
                import torch_homework

                reports.append(torch_homework.main(quick))
            elif section == "peer":
                import peer_otter

                reports.append(peer_otter.main(quick))
            else:
                failures.append(f"unknown section {section}")
        except Exception:  # one broken section must not hide the others' figures
            traceback.print_exc()
            failures.append(f"{section}: crashed (traceback above)")
    misses = [m for r in reports for m in r.misses]
    print(f"\n=== summary ({time.monotonic() - started:.0f} s, {common.load()})")
    for line in misses:
        print(f"  MISS  {line}")
    for line in failures:
        print(f"  ERROR {line}")
    if not misses and not failures:
        print("  every target met")
    return 1 if misses or failures else 0


if __name__ == "__main__":
    sys.exit(main())
