"""What the sandbox's containers said, read into a GradeResult: the harness's result lines from H's
stdout, the limits the containers hit, and the student's output."""

import json
import re

from grader.engine import SandboxUnavailable
from grader.results import CellError, GradeError, GradeResult, TestResult, exact_sum

RESULT_PREFIX = "@@grader "
ENDED_PREFIX = "tampering: the submission's process ended"  # the harness's flag (proxy.ENDED)
WHOLE_RUN = "timed out: the whole submission"  # the harness's message when the run's clock ran out
# Evidence in the student's output (or the tests' messages) that a limit other than memory was hit.
# EAGAIN is also what a non-blocking socket says; homework code rarely has those.
EVIDENCE = {
    "pids": re.compile(rb"Resource temporarily unavailable|can't start new thread|Errno 11\]"),
    "disk": re.compile(rb"No space left on device|Errno 28\]|Disk quota exceeded"),
}


def result_lines(stdout: bytes) -> list[tuple[str, dict]]:
    events = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                event = json.loads(line[len(RESULT_PREFIX) :])
                events.append((event.pop("event"), event))
            except (ValueError, KeyError, AttributeError, TypeError):
                continue
    return events


def _tests(events: list[tuple[str, dict]], *, timed_out: bool) -> tuple[list[TestResult] | None, dict | None]:
    """Per-test results in collected order, and the done event; None where the harness never said."""
    collected = next((body["tests"] for kind, body in events if kind == "collected"), None)
    finished = {body["name"]: body for kind, body in events if kind == "test"}
    done = next((body for kind, body in events if kind == "done"), None)
    if collected is None:
        return None, done
    tests, blamed = [], not timed_out
    for test in collected:
        if test["name"] in finished:
            tests.append(TestResult.model_validate({**test, **finished[test["name"]]}))
            continue
        # Only the test that was running when the clock ran out timed out; the rest never ran.
        tests.append(
            TestResult.model_validate({**test, "points": 0, "outcome": "not_run" if blamed else "timeout"})
        )
        blamed = True
    return tests, done


def _limit_error(box, *, oom: bool, pids_hit: bool, evidence: set[str]) -> GradeError | None:
    # Processes first: a fork bomb often runs out of memory too, but the processes are the cause.
    if pids_hit or "pids" in evidence:
        message = f"your code started too many processes or threads (limit {box.pids})"
        return GradeError(kind="student", code="pids", message=message)
    if oom:
        message = f"your code used more than {box.memory_mb} MiB of memory (the limit)"
        return GradeError(kind="student", code="memory", message=message)
    if "disk" in evidence:
        message = f"your code wrote more than {box.disk_mb} MiB to disk (the limit)"
        return GradeError(kind="student", code="disk", message=message)
    return None


def result(
    box,
    tests_out,
    student_out,
    *,
    timed_out: bool,
    oom: bool,
    pids_hit: bool,
    tests_exit: str,
    duration_s: float,
) -> GradeResult:
    output = bytes(student_out.data).decode("utf-8", "replace")
    events = result_lines(bytes(tests_out.data))
    tests, done = _tests(events, timed_out=timed_out)
    messages = "\n".join(test.message for test in tests or []).encode()
    evidence = student_out.evidence | {code for code, pattern in EVIDENCE.items() if pattern.search(messages)}
    error = _limit_error(box, oom=oom, pids_hit=pids_hit, evidence=evidence)
    if error is None and timed_out:
        error = _timed_out(box)
    if error is None and done and done.get("error"):
        error = GradeError.model_validate({"kind": "student", "code": "harness", **done["error"]})
        if error.code == "timeout":  # the harness's deadline is a little shorter: say the student's limit
            error = error.model_copy(update={"message": _timed_out(box).message})
        if error.kind == "infrastructure":  # e.g. the assignment's tests do not collect
            raise SandboxUnavailable(error.code, f"the test harness failed: {error.message}")
    if error is None and (failed := next((b for k, b in events if k == "import" and not b.get("ok")), None)):
        message = str(failed.get("message", ""))
        code = "syntax" if message.startswith("syntax error") else "import"
        error = GradeError(kind="student", code=code, message=message)
        if message.startswith("timed out"):  # the import itself ran out of time
            error = _timed_out(box)
    if error is None and any(
        test.outcome == "timeout" and test.message.startswith(WHOLE_RUN) for test in tests or []
    ):
        error = _timed_out(box)
    if error is None and (done is None or tests is None):
        tail = bytes(tests_out.data[-2000:] + tests_out.stderr_tail).decode("utf-8", "replace")
        raise SandboxUnavailable(
            "harness", f"the test harness exited without a result ({tests_exit}); its output ends: {tail}"
        )
    if student_out.truncated:
        note = f"output truncated at {student_out.limit // 1024} KiB"
        if error is None:
            error = GradeError(kind="student", code="output", message=note)
        else:
            error = error.model_copy(update={"message": f"{error.message}; {note}"})
    return GradeResult(
        # No tests listed: the clock or a limit stopped the harness before it even collected them.
        status="error" if tests is None else "graded",
        score=exact_sum(test.points for test in tests or []),
        max_score=None if tests is None else exact_sum(test.max_points for test in tests),
        tests=tests or [],
        error=error,
        output=output,
        output_truncated=student_out.truncated,
        flags=_flags(done, oom=oom),
        cell_errors=[
            CellError(cell=body["cell"], message=body["message"]) for kind, body in events if kind == "cell"
        ],
        duration_s=duration_s,
    )


def _timed_out(box) -> GradeError:
    """The wall-clock limit, in the assignment's own figure (the harness stops a little earlier)."""
    return GradeError(kind="student", code="timeout", message=f"timed out after {box.timeout_s} s")


def _flags(done: dict | None, *, oom: bool) -> list[str]:
    flags = [str(flag) for flag in (done or {}).get("flags") or []]
    # Running out of memory also ends S's process; error.code "memory" already says so, and it is no sign
    # of tampering.
    return [flag for flag in flags if not (oom and flag.startswith(ENDED_PREFIX))]


def exit_description(state: dict) -> str:
    if state.get("OOMKilled"):
        return "it ran out of memory: raise memory_mb or make the tests lighter"
    return f"exit status {state.get('ExitCode')}"
