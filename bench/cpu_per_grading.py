"""11. The machine's CPU per grading: what a submission costs the whole host, Docker included.

    .venv/bin/python bench/cpu_per_grading.py [--assignment DIR] [--runs N] [--image T]... [--harness D]...

Grades the assignment's reference solution with `sandbox.grade()`, one at a time, and reads the
cpuacct cgroup of the whole machine (cgroup v1, else v2's cpu.stat) before and after each grading and
the removal of its containers: the containers, dockerd, containerd, the shims, runc and this process,
together. With two or more images or harness folders, the variants are interleaved (A B A B), so a
host whose other tenants come and go skews them alike. Throughput on N cores is at most N * 60 / this
per minute. Not in run_all.py (a diagnostic for sections 2 and 8c).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ADD_ONE, IMAGE, machine_cpu_s, median  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", type=Path, default=ADD_ONE)
    parser.add_argument("--runs", type=int, default=10, help="gradings per variant, after one warm-up each")
    parser.add_argument("--image", action="append", help="a sandbox image (repeat to compare)")
    parser.add_argument("--harness", action="append", type=Path, help="a harness folder (repeat to compare)")
    args = parser.parse_args()

    from pool import load_solution

    from grader import config, engine, sandbox
    from grader.config import Settings

    images = args.image or [IMAGE]
    harnesses = args.harness or [config.HARNESS_DIR]
    variants = [(image, harness) for image in images for harness in harnesses]
    used: dict[tuple, list[float]] = {variant: [] for variant in variants}
    print(f"{args.assignment.name}: {args.runs} gradings per variant, interleaved")
    for run in range(args.runs + 1):
        for image, harness in variants:
            settings = Settings(sandbox_image=image)
            config.HARNESS_DIR = harness
            assignment, unpacked, _ = load_solution(args.assignment, settings)
            engine.wait_removed()
            time.sleep(0.3)  # let the last removal's work settle
            before = machine_cpu_s()
            result = sandbox.grade(assignment, unpacked, settings=settings)
            engine.wait_removed()
            after = machine_cpu_s()
            if result.score != result.max_score:
                print(f"  {image} {harness}: {result.score}/{result.max_score}, not the solution's score")
                return 1
            if run:  # the first of each is a warm-up (page cache, derived images)
                used[(image, harness)].append(after - before)
    for (image, harness), values in used.items():
        label = image if len(harnesses) == 1 else f"{image} {harness}"
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"  {label:44s} {median(values):.3f} core-s per grading (median; {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
