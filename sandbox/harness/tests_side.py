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


def connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """Connect to S, retrying while its container starts."""
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=1.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def handshake(channel, cells) -> tuple[object, set[str], str]:
    """Wait for S to import the student's code: (the module proxy, module names, import error)."""
    from _grader_harness import protocol, proxy
    from _grader_harness.errors import EXITS, HarnessStop, check_error, describe

    try:
        body, decoder = channel.receive()
        names = body.get("modules")
        if type(names) is not list or not all(type(n) is str and n.isidentifier() for n in names):
            raise protocol.ProtocolViolation("a bad list of the student's modules")
        if body.get("kind") != "ready":
            raise protocol.ProtocolViolation("no ready message")
        if "error" in body:
            try:
                error = check_error(body["error"])
            except ValueError as exc:
                raise protocol.ProtocolViolation(str(exc)) from None
            if error["type"] in EXITS:
                channel.on_flag(proxy.EXITED.format(what=EXITS[error["type"]], during=channel.during))
            return proxy.Inert(), set(names), describe(error, cells, during="while being imported")
        module = decoder.decode(body.get("module"))
        if not isinstance(module, proxy.ModuleProxy):
            raise protocol.ProtocolViolation("the student's module is not a module")
        channel.request({"op": "limits", "id": None, "max_bytes": channel.max_bytes})
        return module, set(names), ""
    except protocol.ProtocolViolation as exc:
        return proxy.Inert(), set(), str(channel.stop(proxy.Tampering(f"{proxy.TAMPERING}: {exc}")))
    except HarnessStop as exc:
        return proxy.Inert(), set(), str(exc).replace("during this test", "while being imported")


def run(spec_path: str, reporter, flags: list[str]) -> dict | None:
    """Grade; return the done event's error (None when the harness worked)."""
    import pytest
    from _grader_harness import plugin, proxy
    from _grader_harness.errors import Cells

    started = time.monotonic()
    grade = os.path.dirname(os.path.abspath(spec_path))
    with open(spec_path) as file:
        spec = json.load(file)
    os.chdir(grade)
    deadline = started + float(spec["deadline_s"])
    try:
        sock = connect(spec["student_host"], int(spec["student_port"]), float(spec["connect_timeout_s"]))
    except OSError as exc:
        return {
            "kind": "infrastructure",
            "code": "harness",
            "message": f"could not connect to the submission's process: {exc}",
        }
    cells = Cells(spec.get("cells") or [])
    channel = proxy.Channel(
        sock,
        deadline=deadline,
        deadline_s=float(spec["deadline_s"]),
        max_bytes=int(spec.get("max_message_bytes", 64 * 2**20)),
        cells=cells,
        on_flag=lambda text: text in flags or flags.append(text),
    )
    module, names, import_error = handshake(channel, cells)
    proxy.install(None if import_error else channel, module, names)
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
    sock.close()
    return None


def main(argv: list[str]) -> None:
    from _grader_harness.plugin import Reporter

    # Result lines go to a copy of the real stdout; fd 1 itself, which pytest captures and prints its
    # own report to, goes nowhere, so nothing but result lines reaches our stdout.
    reporter = Reporter(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    flags: list[str] = []
    try:
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
