#!/usr/bin/env bash
# Create .venv and install the package with its development tools (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v '^WARNING: Location' >&2)
