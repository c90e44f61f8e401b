"""The pytest plugin on the tests side: points, fixtures, deadline, and one result line per test."""

import json
import math
import os
import random
import sys
import threading
import time

import pytest

from .channel import RESTARTABLE, Channel
from .errors import DeadlineExceeded, HarnessStop, SubmissionError, TestTimeout
from .proxy import COLLECTION, ModuleProxy

MAX_MESSAGE = 4000
TIMEOUT_GRACE_S = 1.0  # past the deadline, a test stuck in the tests' own code is cut off by the watchdog


class Reporter:
    """Writes `@@grader <json>` lines to the real stdout, each test once, until `done`."""

    def __init__(self, stream):
        self.stream, self.lock = stream, threading.RLock()
        self.finished: set[str] = set()
        self.done = False

    def emit(self, event: str, **body) -> None:
        with self.lock:
            if self.done or (event == "test" and body["name"] in self.finished):
                return
            if event == "test":
                self.finished.add(body["name"])
            self.done = event == "done"
            self.stream.write("@@grader " + json.dumps({"event": event, **body}) + "\n")
            self.stream.flush()


class GraderPlugin:
    """Registered with pytest.main(plugins=[...]); holds the state of one grading run."""

    def __init__(
        self, *, reporter: Reporter, channel: Channel | None, import_error: str, spec: dict, deadline: float
    ):
        self.reporter, self.channel, self.import_error = reporter, channel, import_error
        self.seed, self.gpu = int(spec.get("seed", 0)), bool(spec.get("gpu", False))
        self.deadline, self.deadline_s = deadline, float(spec["deadline_s"])
        self.test_timeout_s = spec.get("test_timeout_s")  # each test's own limit, unless it says otherwise
        self.restarts_left = int(spec.get("max_restarts", 0))
        self.items: list = []
        self.points: dict[str, float] = {}
        self.flags: list[str] = []
        self.errors: list[str] = []  # problems with the assignment's tests: infrastructure errors
        self.current = None
        self.started = 0.0
        self.reports: list = []
        self.stopped_before: HarnessStop | None = None
        self.timeout_reported = False

    def flag(self, text: str) -> None:
        if text not in self.flags:
            self.flags.append(text)

    # ---- collection -------------------------------------------------------------------------------

    def pytest_configure(self, config) -> None:
        config.addinivalue_line(
            "markers", "points(n): the test is worth n points (default 1), all or nothing"
        )
        config.addinivalue_line(
            "markers",
            "timeout(seconds): the test's own time limit (default: the assignment's test_timeout_s)",
        )

    def pytest_collection(self, session) -> None:
        if self.channel is not None:
            self.channel.collecting = True
            self.channel.during = "while the tests were being collected"

    def pytest_collectstart(self, collector) -> None:
        COLLECTION.node = collector.nodeid

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.errors.append(
                f"the tests in {report.nodeid or 'the tests folder'} could not be collected: "
                f"{_short(report.longrepr)}"
            )

    def pytest_collection_finish(self, session) -> None:
        COLLECTION.node = None
        if self.channel is not None:
            self.channel.collecting = False
        for item in session.items:
            marker = item.get_closest_marker("points")
            value = (marker.args[0] if marker.args else marker.kwargs.get("n")) if marker else 1.0
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                self.errors.append(f"{item.nodeid}: @pytest.mark.points needs a number >= 0, not {value!r}")
                continue
            self.points[item.nodeid] = float(value)
        if self.errors:
            return
        self.items = list(session.items)
        self.reporter.emit(
            "collected",
            tests=[
                {"name": item.nodeid, "max_points": self.points[item.nodeid], "visibility": _visibility(item)}
                for item in self.items
            ],
        )
        self.reporter.emit("import", ok=not self.import_error, message=self.import_error)

    def pytest_runtestloop(self, session):
        if self.errors:
            return True  # nothing runs against tests that are broken; tests_side reports the error
        return None

    # ---- running ----------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if self.import_error:
            self._finish(item, "failed", self.import_error, 0.0)
            return True
        if (why := COLLECTION.why(item.nodeid)) is not None:
            # In one process this test's file would not have imported: all of its tests fail.
            self._finish(item, "error", f"the test file could not import your code: {why}", 0.0)
            return True
        if isinstance(self.channel.stopped, RESTARTABLE) and self.restarts_left > 0:
            self._restart(item)
            if self.import_error:
                self._finish(item, "failed", self.import_error, 0.0)
                return True
        stop = self._stop()
        if stop is not None:
            self._finish(item, *self._stopped_outcome(stop), 0.0)
            return True
        self.current, self.started, self.reports = item, time.monotonic(), []
        self.stopped_before = self.channel.stopped
        self.channel.mutated = False
        self.channel.during = f"during {item.nodeid}"
        self.channel.test_limit_s = _time_limit(item, self.test_timeout_s)
        self.channel.test_deadline = (
            self.started + self.channel.test_limit_s if self.channel.test_limit_s else None
        )
        return None

    def _restart(self, item) -> None:
        """A fresh student process for this test, after a crash or a timeout in an earlier one."""
        self.restarts_left -= 1
        self.channel.during = f"while being imported again for {item.nodeid}"
        try:
            module, error, _ = self.channel.restart(
                lambda generation: self.reporter.emit("restart", generation=generation)
            )
        except HarnessStop:
            return  # the run goes on without S: _stop() reports each test
        if error:
            self.import_error = error
            return
        submission = sys.modules.get("submission")
        if module is not None and isinstance(submission, ModuleProxy):
            submission.__dict__["_grader_handle"] = module

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None and isinstance(call.excinfo.value, SubmissionError | HarnessStop):
            # Our message already says what and where; pytest would prefix it with the class name again.
            report.grader_message = str(call.excinfo.value)

    def pytest_runtest_logreport(self, report) -> None:
        if self.current is not None and report.nodeid == self.current.nodeid:
            self.reports.append(report)

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        if self.current is None or nodeid != self.current.nodeid:
            return
        item, self.current = self.current, None
        self.channel.test_deadline = None
        duration = time.monotonic() - self.started
        stop = self.channel.stopped if self.channel.stopped is not self.stopped_before else None
        if stop is None and time.monotonic() > self.deadline:
            stop = self._stop()
        if stop is not None:
            outcome, message = self._stopped_outcome(stop)
            self._finish(item, "error" if outcome == "not_run" else outcome, message, duration)
        else:
            self._finish(item, *_outcome(self.reports), duration, mutated=self.channel.mutated)

    def _stop(self) -> HarnessStop | None:
        if self.channel.stopped is None and time.monotonic() > self.deadline:
            self.channel.stop(DeadlineExceeded(f"timed out: the whole submission has {self.deadline_s:g} s"))
        return self.channel.stopped

    def _stopped_outcome(self, stop: HarnessStop) -> tuple[str, str]:
        if isinstance(stop, TestTimeout):
            return "timeout", str(stop)
        # The first test to meet the deadline timed out; the ones after it never ran.
        if isinstance(stop, DeadlineExceeded) and not self.timeout_reported:
            self.timeout_reported = True
            return "timeout", str(stop)
        return "not_run", str(stop)

    def _finish(self, item, outcome: str, message: str, duration: float, mutated: bool = False) -> None:
        max_points = self.points[item.nodeid]
        self.reporter.emit(
            "test",
            name=item.nodeid,
            points=max_points if outcome == "passed" else 0.0,
            max_points=max_points,
            outcome=outcome,
            message=message[:MAX_MESSAGE],
            visibility=_visibility(item),
            duration_s=round(duration, 4),
            mutated_args=mutated,
        )

    def watchdog(self) -> None:
        """At the deadline, report the test stuck in the tests' own code as timed out, and exit."""
        time.sleep(max(0.0, self.deadline - time.monotonic()) + TIMEOUT_GRACE_S)
        with self.reporter.lock:
            message = f"timed out: the whole submission has {self.deadline_s:g} s"
            for item in self.items:
                if item.nodeid not in self.reporter.finished:
                    outcome = "not_run" if self.timeout_reported else "timeout"
                    self.timeout_reported = True
                    self._finish(item, outcome, message, 0.0)
            error = None
            if not self.items and isinstance(self.channel.stopped, DeadlineExceeded):
                # The student's import took all the time, leaving none to collect the tests: their timeout,
                # not a broken harness (which would be retried and never charged).
                error = {"kind": "student", "code": "timeout", "message": message}
            self.reporter.emit("done", flags=self.flags, error=error)
            os._exit(0)

    # ---- fixtures ---------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def grader_seed(self):
        """Seed random, numpy and torch on both sides before every test."""
        random.seed(self.seed)
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed(self.seed)
        if "torch" in sys.modules:
            sys.modules["torch"].manual_seed(self.seed)
        if self.channel is not None and not self.import_error:
            # Not redundant with rng.py's exchange: that carries only the generators loaded here, and the
            # student's code may use torch while the tests do not.
            self.channel.request({"op": "seed", "id": None, "seed": self.seed})

    @pytest.fixture
    def device(self) -> str:
        """'cuda' when the sandbox has a GPU that torch can see, else 'cpu'."""
        if self.gpu:
            import torch

            if torch.cuda.is_available():
                return "cuda"
        return "cpu"


def _time_limit(item, default) -> float:
    """The test's own time limit in seconds, 0 for none: its timeout marker, else the assignment's."""
    marker = item.get_closest_marker("timeout")
    value = (marker.args[0] if marker.args else marker.kwargs.get("seconds")) if marker else default
    if type(value) in (int, float) and value > 0:
        return float(value)
    return 0.0


def _visibility(item) -> str:
    return "public" if item.nodeid.startswith("public_tests/") else "hidden"


def _outcome(reports: list) -> tuple[str, str]:
    for report in reports:
        if report.failed:
            return ("failed" if report.when == "call" else "error"), _message(report)
    for report in reports:
        if report.skipped:
            if hasattr(report, "wasxfail"):
                return "failed", "the test is marked as expected to fail"
            return "not_run", f"skipped: {_short(report.longrepr)}"
    return "passed", ""


def _message(report) -> str:
    """The failure's reason, with the test's failing line(s) when pytest shows them."""
    longrepr = report.longrepr
    entries = getattr(getattr(longrepr, "reprtraceback", None), "reprentries", None) or []
    lines = [line for line in getattr(entries[-1], "lines", []) if line.startswith(">")] if entries else []
    crash = getattr(longrepr, "reprcrash", None)
    reason = getattr(report, "grader_message", None) or (crash.message if crash else _short(longrepr))
    prefix = "error in the test's setup or teardown: " if report.when != "call" else ""
    return (prefix + "\n".join([*lines, reason]))[:MAX_MESSAGE]


def _short(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skips: (file, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    return (crash.message if crash else str(longrepr))[-MAX_MESSAGE:]
