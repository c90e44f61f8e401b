import pytest
from hypothesis import settings

from grader import accounts, auth, catalog, dispatch, uploads

# Fixtures live in one module per real service they need.
pytest_plugins = [
    "tests.fixtures.docker",
    "tests.fixtures.database",
    "tests.fixtures.services",
    "tests.fixtures.live",
    "tests.fixtures.grading",
]

# Property tests measure correctness, not speed: no per-example deadline on a loaded CI machine.
settings.register_profile("grader", deadline=None)
settings.load_profile("grader")


@pytest.fixture(autouse=True)
def nothing_remembered_between_tests():
    """What a process remembers for a second (whether a worker runs, that the assignments are current,
    their test files, that a token or a sign-in is valid) does not carry from one test to the next: the
    tests share one database and their folders."""
    yield
    dispatch._served.clear()
    catalog._fresh_until.clear()
    uploads._walked.clear()
    auth.forget_checked()
    accounts.signed_in.forget()
