"""How the student's failures look on the tests side: exception classes and messages with cell numbers."""

import builtins

# Builtins a student exception may also be, so `pytest.raises(ValueError)` and hasattr() work in tests.
# Only ones whose constructor takes a single message (UnicodeDecodeError, say, needs five arguments).
BUILTINS = frozenset(
    "ArithmeticError AssertionError AttributeError BufferError EOFError FileExistsError "
    "FileNotFoundError FloatingPointError ImportError IndexError KeyError LookupError MemoryError "
    "ModuleNotFoundError NameError NotImplementedError OSError OverflowError PermissionError "
    "RecursionError RuntimeError TimeoutError TypeError UnboundLocalError ValueError "
    "ZeroDivisionError".split()
)
EXITS = {
    "SystemExit": "called sys.exit()",
    "KeyboardInterrupt": "raised KeyboardInterrupt",
    "GeneratorExit": "raised GeneratorExit",
}
MAX_MESSAGE = 2000
MAX_FRAMES = 8


class SubmissionError(Exception):
    """An exception raised by the student's code, rebuilt on the tests side from plain data."""

    def __str__(self) -> str:
        # KeyError would otherwise show the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class HarnessStop(BaseException):
    """The submission can no longer answer; a BaseException so a test's `except Exception` cannot hide it."""


class DeadlineExceeded(HarnessStop):
    """The whole submission ran out of time."""


class SubmissionCrashed(HarnessStop):
    """S's connection dropped: os._exit, killed, or out of memory. The next test gets a new S."""


class TestTimeout(HarnessStop):
    """One test ran past its own time limit. The next test gets a new S."""

    __test__ = False  # not a pytest test class


class Tampering(HarnessStop):
    """S sent a malformed reply."""


_classes: dict[tuple[str, str | None], type] = {}


def exception_class(name: str, builtin: str | None) -> type:
    """A SubmissionError subclass named like the student's, also a builtin exception where it was one."""
    if not name.isidentifier():
        name = "SubmissionError"
    base = getattr(builtins, builtin) if builtin in BUILTINS else None
    key = (name, builtin if base else None)
    if key not in _classes:
        bases = (SubmissionError, base) if base else (SubmissionError,)
        _classes[key] = type(name, bases, {"__module__": "submission"})
    return _classes[key]


class Cells:
    """Maps lines of submission.py back to the notebook cells they came from."""

    def __init__(self, spans: list[dict]):
        self.spans = [(int(s["cell"]), int(s["start_line"]), int(s["end_line"])) for s in spans]

    def where(self, filename: str, line: int) -> str:
        """'cell 4, line 2' for a notebook's submission.py, else 'model.py, line 7'."""
        if filename == "submission.py":
            for cell, start, end in self.spans:
                if start <= line <= end:
                    return f"cell {cell}, line {line - start + 1}"
        return f"{filename}, line {line}"


def describe(error: dict, cells: Cells, *, during: str) -> str:
    """The message for a student error reported as plain data (already checked by check_error)."""
    if error["type"] in EXITS:
        return f"your code {EXITS[error['type']]} {during}"
    if error["syntax"] is not None:
        file, line, msg = error["syntax"]
        return f"syntax error in {cells.where(file, line)}: {msg}"
    frames = error["frames"]
    where = f" in {cells.where(frames[-1][0], frames[-1][1])}" if frames else ""
    text = f"{error['type']}{where}: {error['message']}"
    if len(frames) > 1:
        lines = [f"  {cells.where(file, line)}, in {func}: {code}" for file, line, func, code in frames]
        text += "\nTraceback (most recent call last):\n" + "\n".join(lines[-MAX_FRAMES:])
    return text


def check_error(error) -> dict:
    """The error part of a reply, if well formed; raises ValueError if not."""
    if type(error) is not dict:
        raise ValueError("error is not an object")
    for key in ("type", "message"):
        if type(error.get(key)) is not str:
            raise ValueError(f"error {key} is not a string")
    if error.get("builtin") is not None and type(error["builtin"]) is not str:
        raise ValueError("error builtin is not a string")
    frames = error.get("frames")
    if type(frames) is not list or not all(_frame(f) for f in frames):
        raise ValueError("error frames are malformed")
    syntax = error.get("syntax")
    if syntax is not None and not (
        type(syntax) is list and len(syntax) == 3 and _frame([syntax[0], syntax[1], "", syntax[2]])
    ):
        raise ValueError("error syntax is malformed")
    return {
        "type": error["type"][:100],
        "builtin": error.get("builtin"),
        "message": error["message"][:MAX_MESSAGE],
        "frames": [[f[0][:200], f[1], f[2][:100], f[3][:200]] for f in frames[-50:]],
        "syntax": None if syntax is None else [syntax[0][:200], syntax[1], syntax[2][:MAX_MESSAGE]],
    }


def _frame(frame) -> bool:
    return (
        type(frame) is list
        and len(frame) == 4
        and type(frame[0]) is str
        and type(frame[1]) is int
        and type(frame[2]) is str
        and type(frame[3]) is str
    )
