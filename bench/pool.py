"""8. The warm pool (grader.pool, grader.parked) on a PyTorch homework: upload -> score, idle cost,
throughput, and `grader grade` with a parked pair.

    .venv/bin/python bench/pool.py [--runs 5] [--assignment assignments/hw4-attention] [--only a,b,c,d]

a: sandbox.grade() of the reference solution in a fresh sandbox and in a pooled pair that had time to
   import (an idle queue), interleaved; the tests' own time (sum of the test durations) beside them.
b: what an idle pool of 2 pairs holds: the containers' memory and this process's RSS.
c: torch submissions per minute: 2 grading threads, a pool of 2, the solution graded `--throughput` times.
d: `grader grade ... --json` as an instructor runs it: no pool vs cli_pool_idle_s (the previous command
   parked a pair), interleaved.
Every section prints the load average; other work on the machine skews all of it.
"""

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import GRADER, ROOT, Report, median  # noqa: E402


def load_solution(folder: Path, settings):
    from grader.assignments import load_assignment, submission_source
    from grader.uploads import unpack_path

    assignment = load_assignment(folder)
    source = submission_source(assignment.solution_dir)
    unpacked = unpack_path(
        source, assignment, max_bytes=settings.max_unpacked_bytes, max_files=settings.max_upload_files
    )
    return assignment, unpacked, source


def _seconds(values) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def settled(warm, api, pairs: int, timeout: float = 120) -> float:
    """Wait until the pool holds `pairs` pairs whose memory stopped growing (their imports are done)."""
    give_up, last = time.monotonic() + timeout, -1.0
    while time.monotonic() < give_up:
        cost = warm.idle_cost(api)
        if cost["pairs"] >= pairs and cost["total_mib"] > 100 * pairs and abs(cost["total_mib"] - last) < 3:
            return cost["total_mib"]
        last = cost["total_mib"]
        time.sleep(1.0)
    raise RuntimeError(f"the pool did not settle: {warm.idle_cost(api)}")


def latency(folder: Path, runs: int) -> list[str]:
    from grader import engine, pool, sandbox
    from grader.config import Settings

    settings = Settings(pool_size=1)
    assignment, unpacked, _ = load_solution(folder, settings)
    report = Report(f"8a. {folder.name} solution, upload -> score with an idle queue ({runs} runs each)")
    client = engine.client(settings)
    cold, warm_times, cold_tests, warm_tests = [], [], [], []
    warm = pool.start(settings)
    recipe = pool.Recipe.of(
        assignment,
        image=sandbox.images.for_assignment(assignment, settings=settings),
        settings=settings,
        harness_dir=sandbox.config.HARNESS_DIR,
    )
    try:
        for _ in range(runs):
            pool.install(None)  # a fresh sandbox
            seconds, result = common.timed(sandbox.grade, assignment, unpacked, settings=settings)
            assert result.score == result.max_score, result
            cold.append(seconds)
            cold_tests.append(sum(test.duration_s or 0 for test in result.tests))
            pool.install(warm)
            warm.want(recipe)
            settled(warm, client.api, 1)
            taken = sum(warm.taken.values())
            seconds, result = common.timed(sandbox.grade, assignment, unpacked, settings=settings)
            assert sum(warm.taken.values()) == taken + 1, "not graded in a pooled pair"
            assert result.score == result.max_score, result
            warm_times.append(seconds)
            warm_tests.append(sum(test.duration_s or 0 for test in result.tests))
            engine.wait_removed()
    finally:
        pool.stop()
        engine.wait_removed()
        client.close()
    report.note(f"fresh:  {_seconds(cold)} s (the tests' own: {_seconds(cold_tests)})")
    report.note(f"pooled: {_seconds(warm_times)} s (the tests' own: {_seconds(warm_tests)})")
    report.figure("fresh sandbox, median", median(cold), "s")
    report.figure(
        "fresh: upload -> score minus the tests' own time, median",
        median([t - own for t, own in zip(cold, cold_tests, strict=True)]),
        "s",
    )
    report.figure("pooled pair, median", median(warm_times), "s")
    report.figure(
        "pooled: upload -> score minus the tests' own time, median",
        median([t - own for t, own in zip(warm_times, warm_tests, strict=True)]),
        "s",
        at_most=0.5,
    )
    report.figure("pooled / fresh", median(warm_times) / median(cold), "x", fmt="{:.2f}")
    return report.misses


def idle_cost(folder: Path) -> list[str]:
    from grader import engine, pool, sandbox
    from grader.config import Settings

    settings = Settings(pool_size=2)
    assignment, unpacked, _ = load_solution(folder, settings)
    report = Report(f"8b. an idle pool of 2 pairs for {folder.name}")
    client = engine.client(settings)
    warm = pool.start(settings)
    try:
        warm.want(
            pool.Recipe.of(
                assignment,
                image=sandbox.images.for_assignment(assignment, settings=settings),
                settings=settings,
                harness_dir=sandbox.config.HARNESS_DIR,
            )
        )
        total = settled(warm, client.api, 2)
        cost = warm.idle_cost(client.api)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report.note(f"per pair (H + S): {cost['memory_mib']} MiB")
        report.figure("the 2 pairs' containers", total, "MiB", fmt="{:.0f}")
        report.figure("this process's peak RSS (the worker's side)", rss, "MiB", fmt="{:.0f}")
        report.figure("worker + idle pool", total + rss, "MiB", fmt="{:.0f}", at_most=1536)
        cpu = [
            client.api.stats(i, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]
            for p in warm.idle
            for i in (p.tests_id, p.student_id)
        ]
        time.sleep(5)
        cpu2 = [
            client.api.stats(i, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]
            for p in warm.idle
            for i in (p.tests_id, p.student_id)
        ]
        report.figure("CPU the idle pairs used over ~7 s", (sum(cpu2) - sum(cpu)) / 1e9, "s", fmt="{:.3f}")
    finally:
        pool.stop()
        engine.wait_removed()
        client.close()
    return report.misses


def throughput(folder: Path, count: int) -> list[str]:
    from grader import engine, pool
    from grader import sandbox as sb
    from grader.config import Settings

    settings = Settings(pool_size=2)
    assignment, unpacked, _ = load_solution(folder, settings)
    report = Report(f"8c. {folder.name}: {count} gradings by 2 threads with a pool of 2")
    pool.start(settings)
    pending = list(range(count))
    lock = threading.Lock()
    scores = []

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                pending.pop()
            result = sb.grade(assignment, unpacked, settings=settings)
            with lock:
                scores.append(result.score == result.max_score)

    try:
        sb.grade(assignment, unpacked, settings=settings)  # the first one wants the pool's pairs
        time.sleep(10)
        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        taken = sum(pool.active().taken.values())
    finally:
        pool.stop()
        engine.wait_removed()
    report.note(f"{sum(scores)}/{count} full marks; {taken} of them in pooled pairs; {elapsed:.1f} s")
    report.figure("torch submissions per minute", count / elapsed * 60, "/min", fmt="{:.1f}", at_least=30)
    return report.misses


def cli(folder: Path, runs: int) -> list[str]:
    report = Report(
        f"8d. `grader grade {folder.name} solution --json`, no pool vs a parked pair ({runs} runs)"
    )
    from grader.assignments import load_assignment, submission_source

    source = submission_source(load_assignment(folder).solution_dir)
    command = [*GRADER, "grade", str(folder), str(source), "--json"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_CLI_POOL")}
    cold, parked = [], []
    common.run(command, env={**base, "GRADER_CLI_POOL_IDLE_S": "300"}, timeout=300)  # parks the first
    for _ in range(runs):
        time.sleep(8)  # an instructor reads the result; the parked pair imports torch meanwhile
        seconds, _ = common.timed(
            common.run, command, env={**base, "GRADER_CLI_POOL_IDLE_S": "300"}, timeout=300
        )
        parked.append(seconds)
        seconds, _ = common.timed(common.run, command, env=base, timeout=300)
        cold.append(seconds)
    report.note(f"no pool: {', '.join(f'{t:.2f}' for t in cold)} s")
    report.note(f"parked:  {', '.join(f'{t:.2f}' for t in parked)} s")
    report.figure("grader grade, no pool, median", median(cold), "s")
    report.figure("grader grade, parked pair, median", median(parked), "s")
    report.figure("parked / no pool", median(parked) / median(cold), "x", fmt="{:.2f}")
    # The last command's parked pair: removed here, not left for its 300 s.
    import docker

    engine = docker.from_env()
    for info in engine.api.containers(all=True, filters={"label": "grader.pool=parked"}):
        engine.api.remove_container(info["Id"], force=True)
    return report.misses


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--throughput", type=int, default=12, help="gradings in 8c")
    parser.add_argument("--assignment", type=Path, default=ROOT / "assignments" / "hw4-attention")
    parser.add_argument("--only", default="a,b,c,d")
    args = parser.parse_args()
    only = set(args.only.split(","))
    misses = []
    if "a" in only:
        misses += latency(args.assignment, args.runs)
    if "b" in only:
        misses += idle_cost(args.assignment)
    if "c" in only:
        misses += throughput(args.assignment, args.throughput)
    if "d" in only:
        misses += cli(args.assignment, args.runs)
    print("\nmisses:", misses or "none")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
