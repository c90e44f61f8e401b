"""Shared helpers for the benchmarks: statistics, the machine's load, PASS/MISS lines, fixtures."""

import io
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
GRADER = [sys.executable, "-m", "grader.cli"]
COURSE = ROOT / "tests" / "fixtures" / "service" / "course"
ADD_ONE = COURSE / "add-one"
IMAGE = os.environ.get("GRADER_SANDBOX_IMAGE", "grader-sandbox:cpu")
PASSES_SOURCE = b"def add(a, b):\n    return a + b\n"


def passes_zip() -> bytes:
    """A trivial submission for add-one: one passing test."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("submission.py", PASSES_SOURCE)
    return buffer.getvalue()


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has used so far (every cgroup: containers, Docker, us)."""
    v1 = Path("/sys/fs/cgroup/cpuacct/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for line in Path("/sys/fs/cgroup/cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    raise RuntimeError("no cpuacct cgroup to read")


def median(values) -> float:
    return statistics.median(values)


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({done.returncode}): {done.stderr[-2000:]!r}")
    return done


class Report:
    """Collects figures; a figure with a target prints PASS or MISS beside it."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, str, str]] = []
        self.misses: list[str] = []
        print(f"\n=== {title}  [{load()}]", flush=True)

    def figure(
        self, name: str, value: float, unit: str = "", *, fmt: str = "{:.3f}", at_most=None, at_least=None
    ):
        shown = fmt.format(value) + (f" {unit}" if unit else "")
        verdict = ""
        if at_most is not None:
            ok = value <= at_most
            verdict = (
                f"{'PASS' if ok else 'MISS'} (target <= {fmt.format(at_most)}{' ' + unit if unit else ''})"
            )
        elif at_least is not None:
            ok = value >= at_least
            verdict = (
                f"{'PASS' if ok else 'MISS'} (target >= {fmt.format(at_least)}{' ' + unit if unit else ''})"
            )
        else:
            ok = True
        if not ok:
            self.misses.append(f"{self.title}: {name}")
        self.rows.append((name, shown, verdict))
        print(f"  {name:<62} {shown:>12}  {verdict}", flush=True)
        return value

    def check(self, name: str, ok: bool, detail: str = ""):
        verdict = "PASS" if ok else "MISS"
        if not ok:
            self.misses.append(f"{self.title}: {name}")
        self.rows.append((name, detail, verdict))
        print(f"  {name:<62} {detail:>12}  {verdict}", flush=True)

    def note(self, text: str):
        print(f"  {text}", flush=True)
