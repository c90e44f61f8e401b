#!/usr/bin/env bash
# Install Debian's chromium for tests/test_browser.py (Playwright drives it; `playwright install`
# would need to download a browser, which CI cannot). Idempotent.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
