# Fixtures live in one module per real service they need.
pytest_plugins = [
    "tests.fixtures.docker",
    "tests.fixtures.database",
    "tests.fixtures.services",
    "tests.fixtures.live",
]
