from hypothesis import settings

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
