"""Tests side (H): connect to the student side, run the hidden tests with pytest, print result lines.

Run as `python3 -I tests_side.py GRADE/spec.json` with GRADE holding tests/ (and public_tests/). Only
`@@grader <json>` lines go to stdout; pytest's own output is thrown away.
"""

import json
import os
import socket
import sys
import threading
import time
import traceback


def _bootstrap() -> None:
    """Import this folder as a private package, so that no test helper module can shadow ours."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_grader_harness", os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["_grader_harness"] = package
    spec.loader.exec_module(package)


def connector(host: str, base_port: int):
    """connect(generation, give_up): a connection to that generation's S, retrying while it starts.

    Each S (the first, and one per restart) listens on its own port, so that a new one never meets
    the old one's connection.
    """

    def connect(generation: int, give_up: float) -> socket.socket:
        while True:
            try:
                sock = socket.create_connection((host, base_port + generation), timeout=1.0)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.05)

    return connect


def preload(grade: str, student: set[str]) -> None:
    """Import the installed libraries the test files import (torch, numpy...), so that collecting them
    later is quick: this runs while S imports the student's code. Failures are left to collection."""
    import ast
    import importlib
    import importlib.util

    wanted: set[str] = set()
    for folder in ("tests", "public_tests"):
        for root, _, files in os.walk(os.path.join(grade, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                try:
                    with open(os.path.join(root, name), "rb") as file:
                        tree = ast.parse(file.read())
                except (OSError, SyntaxError, ValueError):
                    continue
                for node in tree.body:
                    if isinstance(node, ast.Import):
                        wanted |= {alias.name for alias in node.names}
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        wanted.add(node.module)
    local = {name[:-3] for _, _, files in os.walk(grade) for name in files if name.endswith(".py")}
    for name in sorted(wanted):
        top = name.partition(".")[0]
        if top in student or top in local or importlib.util.find_spec(top) is None:
            continue  # the student's, or the tests' own helpers: imported by pytest, in its own way
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - collection will import it again and report the error
            pass


def run(spec_path: str, reporter, flags: list[str]) -> dict | None:
    """Grade; return the done event's error (None when the harness worked)."""
    import pytest
    from _grader_harness import channel as connection
    from _grader_harness import plugin, proxy
    from _grader_harness.errors import Cells

    started = time.monotonic()
    grade = os.path.dirname(os.path.abspath(spec_path))
    with open(spec_path) as file:
        spec = json.load(file)
    os.chdir(grade)
    deadline = started + float(spec["deadline_s"])
    cells = Cells(spec.get("cells") or [])
    channel = connection.Channel(
        connector(spec["student_host"], int(spec["student_port"])),
        deadline=deadline,
        deadline_s=float(spec["deadline_s"]),
        max_bytes=int(spec.get("max_message_bytes", 64 * 2**20)),
        cells=cells,
        on_flag=lambda text: text in flags or flags.append(text),
    )
    try:
        channel.open(float(spec["connect_timeout_s"]))
    except OSError as exc:
        # S listens before any of the student's code runs; one that never does was stopped by what the
        # upload holds (its files could not be unpacked, say), which is the student's to fix.
        return {
            "kind": "student",
            "code": "start",
            "message": f"your submission's process did not start, so no test could run ({exc})",
        }
    names = {str(name) for name in spec.get("student_modules", [])}
    preload(grade, names | {"submission"})  # while S imports the submission
    handle, import_error, failed_cells = channel.ready()
    if import_error:
        module = proxy.Inert()
    elif handle is None:
        module = proxy.no_submission_module()
    else:
        module = proxy.ModuleProxy("submission", handle, channel)
    proxy.install(None if import_error else channel, module, names)
    for cell, message in failed_cells:
        reporter.emit("cell", cell=cell, message=message[:2000])
    grader = plugin.GraderPlugin(
        reporter=reporter, channel=channel, import_error=import_error, spec=spec, deadline=deadline
    )
    grader.flags = flags  # one list: tampering seen in the handshake or in any test
    threading.Thread(target=grader.watchdog, daemon=True).start()
    folders = [name for name in ("tests", "public_tests") if os.path.isdir(os.path.join(grade, name))]
    args = [
        "-q",
        "-p",
        "no:cacheprovider",
        # These two only turn exceptions in __del__ and in threads into warnings, which never change a
        # score; at the end of the session they run gc.collect() over and over, ~0.9 s with torch loaded.
        "-p",
        "no:unraisableexception",
        "-p",
        "no:threadexception",
        "-c",
        os.devnull,
        "--rootdir",
        grade,
        "--confcutdir",
        grade,
        "--strict-markers",
        *folders,
    ]
    code = pytest.main(args, plugins=[grader])
    if grader.errors:
        return {"kind": "infrastructure", "code": "harness", "message": "\n".join(grader.errors)[:4000]}
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
        return {"kind": "infrastructure", "code": "harness", "message": f"pytest stopped with {code!r}"}
    if channel.sock is not None:
        channel.sock.close()
    return None


def main(argv: list[str]) -> None:
    from _grader_harness.plugin import Reporter

    # Result lines go to a copy of the real stdout; fd 1 itself, which pytest captures and prints its
    # own report to, goes nowhere, so nothing but result lines reaches our stdout.
    reporter = Reporter(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    devnull = os.open(os.environ.get("GRADER_DEBUG_PYTEST_OUT", os.devnull), os.O_WRONLY | os.O_CREAT)
    os.dup2(devnull, 1)
    flags: list[str] = []
    try:
        from _grader_harness import torch_startup, warm

        torch_startup.install()

        if warm.pooled():  # started ahead of its submission: pytest and the libraries now, then the spec
            import pytest  # noqa: F401
            from _grader_harness import plugin  # noqa: F401 - with channel, proxy, protocol, mirror

            warm.preload()
            warm.receive(student=False)
        error = run(argv[1], reporter, flags)
    except BaseException:  # noqa: BLE001 - a broken harness is still reported, as ours
        error = {"kind": "infrastructure", "code": "harness", "message": traceback.format_exc()[-4000:]}
    reporter.emit("done", flags=flags, error=error)
    os._exit(0)


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    _bootstrap()
    from _grader_harness import tests_side

    tests_side.main(sys.argv)
