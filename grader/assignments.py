"""Load and validate assignment folders. The format is a public contract: docs/assignment-format.md."""

import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from grader.results import exact_sum

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# data/ is copied into both containers of the sandbox for every submission, into their scratch space.
MAX_DATA_BYTES = 256 * 2**20


class _Strict(BaseModel):
    # A typo in a key must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatePolicy(_Strict):
    grace_minutes: int = Field(default=0, ge=0)
    penalty_percent: float = Field(default=0, ge=0, le=100, description="deducted per started unit late")
    unit: Literal["day", "hour"] = "day"
    max_penalty_percent: float = Field(default=100, ge=0, le=100)
    # Uploads are refused after this instant; None means they are always accepted.
    cutoff: AwareDatetime | None = None
    # Whether the course's late days (CourseConfig.late_days) may be spent on this assignment.
    late_days: bool = True


class LateDays(_Strict):
    """A budget of late days per student, shared by the assignments (grader.late_days spends them)."""

    budget: int = Field(default=0, ge=0, le=365, description="late days per student; 0: none")


class SubmissionPolicy(_Strict):
    max: int | None = Field(default=None, ge=1, description="submissions per student")
    per_hour: int | None = Field(default=None, ge=1, description="submissions per student per hour")
    counts: Literal["best", "last"] = "best"


Visibility = Literal["visible", "hidden", "after_due", "after_release"]
VISIBILITIES: tuple[str, ...] = ("visible", "hidden", "after_due", "after_release")
QUESTION_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class FeedbackPolicy(_Strict):
    # How a test whose details a student may not see (yet) is shown: only in a total ("score"), or by
    # name with its points ("names"). "full" is the older spelling of tests = "visible".
    hidden: Literal["score", "names", "full"] = "score"
    # The visibility of the tests in tests/ (public_tests/ are always visible); None: "visible" when
    # hidden = "full", else "hidden".
    tests: Visibility | None = None
    # Per test: a glob on its name (tests/test_mlp.py::test_relu, tests/test_loss.py, tests/test_*::*grad*)
    # to a visibility; the first pattern that matches wins.
    visibility: dict[str, Visibility] = {}

    @field_validator("visibility")
    @classmethod
    def _patterns_name_hidden_tests(cls, rules: dict[str, str]) -> dict[str, str]:
        for pattern in rules:
            if not pattern.startswith("tests/"):
                raise ValueError(
                    f"{pattern!r}: patterns name tests in tests/ (public_tests/ are always visible)"
                )
        return rules

    @property
    def default_visibility(self) -> str:
        return self.tests or ("visible" if self.hidden == "full" else "hidden")


class RubricItem(_Strict):
    label: str = Field(min_length=1, max_length=200)
    # Positive items add points, negative ones deduct them.
    points: float
    description: str = ""


class Question(_Strict):
    """A manually graded question: a grader picks rubric items (grader.rubrics)."""

    id: str
    title: str = Field(min_length=1, max_length=200)
    points: float = Field(gt=0)
    # "zero": the score starts at 0 and positive items add; "full": it starts at `points` and negative
    # items deduct. Either way it stays between 0 and `points`.
    start: Literal["zero", "full"] = "zero"
    rubric: list[RubricItem] = []
    # The question's comment bank starts with these; graders add to it.
    comments: list[str] = []

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not QUESTION_ID.match(value):
            raise ValueError("a question id is lower-case letters, digits, - and _")
        return value

    @model_validator(mode="after")
    def _labels_unique(self) -> "Question":
        labels = [item.label for item in self.rubric]
        if len(set(labels)) != len(labels):
            raise ValueError(f"question {self.id!r}: rubric labels must be unique")
        return self


class SandboxSpec(_Strict):
    timeout_s: int = Field(default=300, ge=5, le=3600)
    # Each test's own limit (a test's @pytest.mark.timeout(N) overrides it): a hang then costs only that
    # test, and the student's process is started afresh for the next one. 0 turns it off.
    test_timeout_s: float = Field(default=60, ge=0, le=3600)
    memory_mb: int = Field(default=2048, ge=128, le=65536)
    cpus: float = Field(default=1.0, gt=0, le=64)
    pids: int = Field(default=256, ge=32, le=4096)
    disk_mb: int = Field(default=512, ge=16, le=16384, description="writable scratch space")
    gpu: bool = False
    image: str | None = None


class TeamSizes(_Strict):
    min_size: int = Field(default=2, ge=1, le=20)
    max_size: int = Field(default=3, ge=1, le=20)

    @model_validator(mode="after")
    def _ordered(self) -> "TeamSizes":
        if self.max_size < self.min_size:
            raise ValueError("teams.max_size is below teams.min_size")
        return self


class CourseConfig(_Strict):
    code: str
    title: str
    term: str
    timezone: str = "UTC"
    assignments_share: float = Field(default=45, gt=0, le=100, description="percent of the final grade")
    late: LatePolicy = LatePolicy()
    late_days: LateDays = LateDays()
    submissions: SubmissionPolicy = SubmissionPolicy()
    teams: TeamSizes = TeamSizes()
    # The Monday of the term's first week: `grader course shift` moves every date by its change.
    week1: date | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {name!r} (use an IANA name such as America/New_York)"
            ) from exc
        return name


class AssignmentConfig(_Strict):
    title: str
    # "project": a team's milestone (grader.teams): one upload counts for the team; tests/ are optional
    # (an automatic check that the code runs), the grade comes from [[questions]].
    kind: Literal["homework", "project"] = "homework"
    released: AwareDatetime
    due: AwareDatetime
    weight: float = Field(gt=0)
    formats: list[Literal["ipynb", "zip", "pdf"]] = Field(default=["ipynb", "zip"], min_length=1)
    # The largest upload accepted for this assignment, at most the service's GRADER_MAX_UPLOAD_BYTES.
    max_upload_mb: float | None = Field(default=None, gt=0)
    required_files: list[str] = []
    late: LatePolicy | None = None
    submissions: SubmissionPolicy | None = None
    feedback: FeedbackPolicy = FeedbackPolicy()
    sandbox: SandboxSpec = SandboxSpec()
    questions: list[Question] = []

    @model_validator(mode="after")
    def _ordered(self) -> "AssignmentConfig":
        if self.due < self.released:
            raise ValueError("due is before released")
        if self.late and self.late.cutoff and self.late.cutoff < self.due:
            raise ValueError("late.cutoff is before due")
        if "pdf" in self.formats and self.kind != "project":
            raise ValueError('pdf uploads are for kind = "project" (a homework\'s tests cannot read a PDF)')
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        return self

    @field_validator("required_files")
    @classmethod
    def _relative(cls, names: list[str]) -> list[str]:
        for name in names:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{name!r} must be a relative path inside the submission")
        return names


def merged_late(course: LatePolicy, assignment: LatePolicy | None) -> LatePolicy:
    """The course's late policy with the keys the assignment's [late] table sets on top, key by key.

    An assignment that sets only its cutoff keeps the course's penalty: replacing the table as a whole
    would silently drop it (issue 17).
    """
    if assignment is None:
        return course
    own = assignment.model_dump(include=assignment.model_fields_set)
    return LatePolicy.model_validate(course.model_dump(include=course.model_fields_set) | own)


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"


class InvalidAssignment(Exception):
    def __init__(self, path: Path, problems: list[Problem]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(map(str, problems)))


@dataclass(frozen=True)
class Assignment:
    slug: str
    path: Path
    config: AssignmentConfig
    course: CourseConfig

    @property
    def title(self) -> str:
        return self.config.title

    @property
    def due(self) -> datetime:
        return self.config.due

    @cached_property
    def late(self) -> LatePolicy:
        """The effective late policy: the course's, with each key the assignment's [late] sets on top."""
        return merged_late(self.course.late, self.config.late)

    def late_sources(self) -> dict[str, str]:
        """Where each key of the effective late policy comes from: "assignment", "course" or "default"."""
        own = self.config.late.model_fields_set if self.config.late else set()
        course = self.course.late.model_fields_set
        return {
            key: "assignment" if key in own else "course" if key in course else "default"
            for key in LatePolicy.model_fields
        }

    @property
    def submissions(self) -> SubmissionPolicy:
        return self.config.submissions or self.course.submissions

    @property
    def sandbox(self) -> SandboxSpec:
        return self.config.sandbox

    @property
    def is_team(self) -> bool:
        """One upload counts for the student's whole team."""
        return self.config.kind == "project"

    @property
    def autograded(self) -> bool:
        """Whether uploads go to the sandbox: always for homeworks; for a project, when it has tests/."""
        return self.config.kind == "homework" or any(self.tests_dir.rglob("test_*.py"))

    @property
    def questions(self) -> list[Question]:
        return self.config.questions

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.config.questions if q.id == question_id), None)

    @property
    def manual_max(self) -> float:
        """The points of the manually graded questions."""
        return exact_sum(q.points for q in self.config.questions)

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def public_tests_dir(self) -> Path:
        return self.path / "public_tests"

    @property
    def solution_dir(self) -> Path:
        return self.path / "solution"

    @property
    def starter_dir(self) -> Path:
        return self.path / "starter"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def requirements_file(self) -> Path:
        return self.path / "requirements.txt"

    def data_files(self) -> dict[str, bytes]:
        """The files of data/, by their path in the assignment folder (data/train.npz)."""
        if not self.data_dir.is_dir():
            return {}
        return {
            f"data/{path.relative_to(self.data_dir).as_posix()}": path.read_bytes()
            for path in sorted(self.data_dir.rglob("*"))
            if path.is_file()
        }


def with_data(files: dict[str, bytes], data: dict[str, bytes]) -> dict[str, bytes]:
    """The student's files with the assignment's data on top: the data wins where their paths clash.

    A student file clashes when it is at a data file's path, at one of its folders (a file named
    `data`), or inside a data file (data/x.npy/y).
    """
    folders = {str(parent) for name in data for parent in PurePosixPath(name).parents}

    def clashes(name: str) -> bool:
        return name in data or name in folders or any(str(up) in data for up in PurePosixPath(name).parents)

    return {name: content for name, content in files.items() if not clashes(name)} | data


def _problems_from(exc: ValidationError, file: str) -> list[Problem]:
    return [
        Problem(file, ".".join(str(part) for part in err["loc"]), err["msg"].removeprefix("Value error, "))
        for err in exc.errors()
    ]


def _read_toml(path: Path, problems: list[Problem]) -> dict | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(path.name, "", "file is missing"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(Problem(path.name, "", f"not valid TOML: {exc}"))
    return None


def course_file(assignment_dir: Path) -> Path:
    return assignment_dir.parent / "course.toml"


def load_course(path: Path) -> CourseConfig:
    """Read course.toml; raise InvalidAssignment listing every problem."""
    problems: list[Problem] = []
    data = _read_toml(path, problems)
    if data is not None:
        try:
            return CourseConfig.model_validate(data)
        except ValidationError as exc:
            problems += _problems_from(exc, path.name)
    raise InvalidAssignment(path, problems)


def _solution_problems(folder: Path, label: str) -> list[Problem]:
    if not folder.is_dir():
        return [Problem(f"{label}/", "", "folder is missing")] if label == "solution" else []
    notebooks = list(folder.glob("*.ipynb"))
    if len(notebooks) > 1 and not (folder / "submission.py").exists():
        return [Problem(f"{label}/", "", "holds several notebooks; keep one, or a submission.py")]
    if not notebooks and not (folder / "submission.py").exists():
        return [Problem(f"{label}/", "", "needs a notebook or a submission.py")]
    return []


def validate_folder(path: Path) -> list[Problem]:
    """Every static problem of an assignment folder (the course file included), without running it."""
    problems: list[Problem] = []
    if not path.is_dir():
        return [Problem(str(path), "", "is not a folder")]
    if not SLUG.match(path.name):
        problems.append(Problem(path.name, "", "folder name must be lower-case letters, digits and dashes"))
    try:
        load_course(course_file(path))
    except InvalidAssignment as exc:
        problems += [Problem(f"../{p.file}", p.key, p.message) for p in exc.problems]
    data = _read_toml(path / "assignment.toml", problems)
    config = None
    if data is not None:
        try:
            config = AssignmentConfig.model_validate(data)
        except ValidationError as exc:
            problems += _problems_from(exc, "assignment.toml")
    tests = path / "tests"
    has_tests = tests.is_dir() and any(tests.rglob("test_*.py"))
    project = config is not None and config.kind == "project"
    if not has_tests and not project:
        problems.append(Problem("tests/", "", "needs at least one test_*.py file"))
    if project and not has_tests and not config.questions:
        problems.append(
            Problem("assignment.toml", "questions", "a project milestone without tests needs [[questions]]")
        )
    for folder in ("tests", "public_tests"):
        for source in sorted((path / folder).rglob("*.py")) if (path / folder).is_dir() else []:
            try:
                compile(source.read_bytes(), str(source), "exec")
            except SyntaxError as exc:
                problems.append(Problem(str(source.relative_to(path)), f"line {exc.lineno}", exc.msg))
    if has_tests or not project:  # a project's check needs a solution to check the check against
        problems += _solution_problems(path / "solution", "solution")
        problems += _solution_problems(path / "starter", "starter")
    problems += _data_problems(path / "data", config.sandbox if config else SandboxSpec())
    problems += _requirements_problems(path / "requirements.txt")
    return problems


def _data_problems(folder: Path, box: SandboxSpec) -> list[Problem]:
    if not folder.exists():
        return []
    if not folder.is_dir():
        return [Problem("data", "", "must be a folder")]
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    held = f"holds {size / 2**20:.1f} MiB"
    if size > MAX_DATA_BYTES:
        limit = MAX_DATA_BYTES // 2**20
        return [Problem("data/", "", f"{held}; the limit is {limit} MiB (it is copied for every submission)")]
    # Unpacked into /tmp, a tmpfs: it takes the sandbox's scratch space and memory alike.
    room = min(box.disk_mb, box.memory_mb) // 2
    if size > room * 2**20:
        message = f"{held}, more than half of sandbox.disk_mb and memory_mb ({room} MiB): raise both"
        return [Problem("data/", "", message)]
    return []


def _requirements_problems(path: Path) -> list[Problem]:
    if not path.exists():
        return []
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem("requirements.txt", "", f"cannot be read as UTF-8 text: {exc}")]
    # The derived image is cached by this file's bytes: an option, an include or a local path would
    # change what gets installed without changing them.
    return [
        Problem(
            "requirements.txt",
            f"line {number}",
            "only requirements such as `einops==0.8.1`: no pip options, includes or local paths",
        )
        for number, line in enumerate(lines, 1)
        if line.strip().startswith(("-", ".", "/"))
    ]


def load_assignment(path: Path) -> Assignment:
    """Load one assignment folder; raise InvalidAssignment with every problem found."""
    path = path.resolve()
    problems = validate_folder(path)
    if problems:
        raise InvalidAssignment(path, problems)
    config = AssignmentConfig.model_validate(tomllib.loads((path / "assignment.toml").read_text("utf-8")))
    return Assignment(slug=path.name, path=path, config=config, course=load_course(course_file(path)))


def load_all(assignments_dir: Path) -> dict[str, Assignment]:
    """Every assignment under the directory, by slug; raise InvalidAssignment on the first bad one."""
    found = {}
    for child in sorted(assignments_dir.iterdir()) if assignments_dir.is_dir() else []:
        if child.is_dir() and (child / "assignment.toml").exists():
            found[child.name] = load_assignment(child)
    return found


def submission_source(folder: Path) -> Path:
    """The file or folder to grade for a solution/ or starter/ folder: its notebook, else the folder."""
    notebooks = sorted(folder.glob("*.ipynb"))
    if notebooks and not (folder / "submission.py").exists():
        return notebooks[0]
    return folder
