"""Where the time of one sandbox.grade() goes: a timeline of host calls and in-container marks.

Instrumentation lives here only: Docker API calls are wrapped, and the harness and BOOT script that
the containers run are copies with `@@bench <mark> <time>` lines written to stderr at each phase
(the containers share the host's clock). Nothing in grader/ or sandbox/ is changed on disk.
"""

import contextlib
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import docker.api.client

from grader import config, containers, engine, sandbox, sandbox_files

MARK = 'import sys as _s, time as _t; _s.stderr.write("@@bench {name} %r\\n" % _t.time()); _s.stderr.flush()'
MARK_LINE = re.compile(rb"@@bench (\w+) ([0-9.]+)")

# (file, anchor, mark name, before|after): where the harness copy writes a mark. A missing anchor
# (the harness changed) only loses that mark.
HARNESS_MARKS = [
    ("tests_side.py", "    from _grader_harness.plugin import Reporter\n", "H_harness_main", "after"),
    ("tests_side.py", "    from _grader_harness.errors import Cells\n", "H_imported_pytest", "after"),
    ("tests_side.py", '    cells = Cells(spec.get("cells") or [])\n', "H_connected", "before"),
    (
        "tests_side.py",
        "    proxy.install(None if import_error else channel, module, names)\n",
        "H_handshake_done",
        "before",
    ),
    ("tests_side.py", "    code = pytest.main(args, plugins=[grader])\n", "H_pytest_main_start", "before"),
    ("tests_side.py", '    reporter.emit("done", flags=flags, error=error)\n', "H_pytest_done", "before"),
    (
        "student_side.py",
        "    server = socket.create_server((argv[1], int(argv[2])))\n",
        "S_harness_main",
        "before",
    ),
    ("student_side.py", "    server.close()\n", "S_accepted", "before"),
    ("student_side.py", "    side.serve()\n", "S_ready_sent", "before"),
]

API_CALLS = [
    "ping",
    "inspect_image",
    "create_container",
    "attach_socket",
    "start",
    "wait",
    "stats",
    "kill",
    "inspect_container",
    "remove_container",
]


def _mark_code(name: str, indent: str) -> str:
    return indent + MARK.format(name=name) + "\n"


def instrumented_harness(target: Path) -> list[str]:
    """Copy the harness into target with marks; return the marks whose anchor was not found."""
    shutil.copytree(config.HARNESS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    missing = []
    for file, anchor, name, where in HARNESS_MARKS:
        path = target / file
        text = path.read_text()
        if anchor not in text:
            missing.append(name)
            continue
        indent = anchor[: len(anchor) - len(anchor.lstrip())]
        mark = _mark_code(name, indent)
        text = text.replace(anchor, anchor + mark if where == "after" else mark + anchor, 1)
        path.write_text(text)
    return missing


def instrumented_boot(role: str) -> str:
    """BOOT with marks at the interpreter's start and after the tar is unpacked."""
    boot = containers.BOOT
    lines = boot.splitlines(keepends=True)
    first = _mark_code("BOOT_start", "")
    untar_anchor = 'os.chdir(os.environ.get("SANDBOX_WORKDIR", "/tmp"))\n'
    boot = first + "".join(lines)
    if untar_anchor in boot:
        boot = boot.replace(untar_anchor, _mark_code("BOOT_untarred", "") + untar_anchor, 1)
    return boot


@contextlib.contextmanager
def instrumented():
    """Patch the Docker client and the sandbox modules; yield the list events are appended to."""
    events: list[tuple[str, float, float]] = []  # (name, start, end)
    chunks: list[tuple[float, bytes, str]] = []
    saved_api = {name: getattr(docker.api.client.APIClient, name) for name in API_CALLS}
    patched = [
        (sandbox, "_client"),
        (sandbox_files, "tests_files"),
        (sandbox_files, "student_tar"),
        (containers, "frames_iter"),
        (containers, "BOOT"),
        (engine, "remove"),
    ]
    saved = {name: getattr(module, name) for module, name in patched}
    saved_harness = config.HARNESS_DIR
    tmp = Path(tempfile.mkdtemp(prefix="bench-harness-"))

    def wrap(name, fn):
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                events.append((name, start, time.time()))

        return wrapper

    socks: list[int] = []  # id() of the attach sockets in order: H's first

    def attach(*args, **kwargs):
        start = time.time()
        sock = saved_api["attach_socket"](*args, **kwargs)
        events.append(("api.attach_socket", start, time.time()))
        socks.append(id(sock))
        return sock

    def frames(sock, tty=False):
        role = "H" if socks and id(sock) == socks[0] else "S"
        for stream, chunk in saved["frames_iter"](sock, tty=tty):
            chunks.append((time.time(), chunk, role))
            yield stream, chunk

    def remove(api, container_id):
        # Read the engine's own start/finish times before the container goes (not timed).
        try:
            state = saved_api["inspect_container"](api, container_id)["State"]
            role = saved_api["inspect_container"](api, container_id)["Config"]["Labels"].get(
                "grader.role", "?"
            )
            events.append((f"engine_{role}_state", _iso(state["StartedAt"]), _iso(state["FinishedAt"])))
        except Exception:  # noqa: BLE001 - a profile without engine times is still a profile
            pass
        return saved["remove"](api, container_id)

    try:
        for name in API_CALLS:
            setattr(docker.api.client.APIClient, name, wrap(f"api.{name}", saved_api[name]))
        docker.api.client.APIClient.attach_socket = attach
        sandbox._client = wrap("client", saved["_client"])
        sandbox_files.tests_files = wrap("tests_files", saved["tests_files"])
        sandbox_files.student_tar = wrap("student_tar", saved["student_tar"])
        containers.frames_iter = frames
        engine.remove = remove  # called by engine's remover thread, after grade() returns
        containers.BOOT = instrumented_boot("")
        missing = instrumented_harness(tmp / "harness")
        config.HARNESS_DIR = tmp / "harness"
        yield events, chunks, missing
    finally:
        for name, fn in saved_api.items():
            setattr(docker.api.client.APIClient, name, fn)
        for module, name in patched:
            setattr(module, name, saved[name])
        config.HARNESS_DIR = saved_harness
        shutil.rmtree(tmp, ignore_errors=True)


def _iso(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond times as epoch seconds."""
    from datetime import datetime

    main, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + float("0." + (frac or "0"))


def timeline(assignment, unpacked, settings) -> tuple[dict[str, float], float, object, list[str]]:
    """One instrumented grade: ({milestone: seconds since the call}, total, result, missing marks)."""
    with instrumented() as (events, chunks, missing):
        t0 = time.time()
        result = sandbox.grade(assignment, unpacked, settings=settings)
        total = time.time() - t0
        engine.wait_removed()  # the removals are timed too, off the result path
    marks: dict[str, float] = {}
    for _at, chunk, role in chunks:
        for name, stamp in MARK_LINE.findall(chunk):
            label = name.decode()
            if label.startswith("BOOT"):
                label = f"{role}_{label}"
            marks[label] = float(stamp) - t0
    m: dict[str, float] = {}
    by_name: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in events:
        by_name.setdefault(name, []).append((start - t0, end - t0))
    m["client ready (DockerClient + ping)"] = by_name["client"][0][1]
    if "api.inspect_image" in by_name:
        m["image checked"] = by_name["api.inspect_image"][0][1]
    creates = by_name.get("api.create_container", [])
    if len(creates) >= 2:
        m["H created"] = creates[0][1]
        m["S created"] = creates[1][1]
    m["student tar built"] = by_name["student_tar"][0][1]
    m["tests files read"] = by_name["tests_files"][0][1]
    starts = by_name.get("api.start", [])
    attaches = by_name.get("api.attach_socket", [])
    if len(starts) >= 2:
        m["H attached"] = attaches[0][1]
        m["H start returned"] = starts[0][1]
        m["S attached"] = attaches[1][1]
        m["S start returned"] = starts[1][1]
    for role in ("tests", "student"):
        if f"engine_{role}_state" in by_name:
            started, finished = by_name[f"engine_{role}_state"][0]
            m[f"{role[0].upper()} engine StartedAt"] = started
            m[f"{role[0].upper()} engine FinishedAt"] = finished
    for name, at in marks.items():
        m[name] = at
    waits = by_name.get("api.wait", [])
    if waits:
        m["wait for H returned"] = waits[-1][1]
    kills = by_name.get("api.kill", [])
    if kills:
        m["last pids sample done"] = kills[0][0]
        m["both killed"] = kills[-1][1]
    inspects = by_name.get("api.inspect_container", [])
    if inspects:
        m["both inspected"] = max(end for _s, end in inspects)
    removes = by_name.get("api.remove_container", [])
    if removes:
        m["both removed"] = removes[-1][1]
    m["grade() returned"] = total
    calls: dict[str, list[float]] = {}
    for name, start, end in events:
        if name.startswith("api."):
            calls.setdefault(name, []).append(end - start)
    m.update({f"#{name}": sum(v) for name, v in calls.items()})
    m.update({f"%{name}": len(v) for name, v in calls.items()})
    return m, total, result, missing


def profile(
    assignment, unpacked, settings, runs: int
) -> tuple[list[tuple[str, float, float]], float, list[str]]:
    """Median milestones over runs, ordered by time: [(milestone, median s since start, delta)]."""
    samples: dict[str, list[float]] = {}
    totals, missing = [], []
    for _ in range(runs):
        m, total, result, missing = timeline(assignment, unpacked, settings)
        if result.status != "graded":
            raise RuntimeError(f"profiled grading did not succeed: {result.error}")
        totals.append(total)
        for name, at in m.items():
            samples.setdefault(name, []).append(at)
    medians = sorted(
        ((name, statistics.median(v)) for name, v in samples.items() if name[0] not in "#%"),
        key=lambda x: x[1],
    )
    rows, previous = [], 0.0
    for name, at in medians:
        rows.append((name, at, at - previous))
        previous = at
    calls = sorted(
        (
            (name[1:], statistics.median(v), statistics.median(samples["%" + name[1:]]))
            for name, v in samples.items()
            if name.startswith("#")
        ),
        key=lambda x: -x[1],
    )
    return rows, statistics.median(totals), missing, calls


def print_profile(rows, total, missing, calls=(), out=print):
    out(f"  {'milestone (median over runs)':<44} {'t (s)':>7} {'+delta':>7}")
    for name, at, delta in rows:
        out(f"  {name:<44} {at:7.3f} {delta:+7.3f}")
    out(f"  instrumented grade() median total: {total:.3f} s")
    if calls:
        out(
            "  Docker API calls per grade (median of their summed time): "
            + ", ".join(f"{name[4:]} x{n:g} {t * 1000:.0f} ms" for name, t, n in calls)
        )
    if missing:
        out(f"  (harness marks not placed, anchors changed: {', '.join(missing)})")
