#!/bin/sh
# Install Debian's chromium for the browser test of the playground (tests/integration/).
# Always exits 0: when the browser cannot be installed, it says why and the test skips.
set -u

BROWSER=/usr/bin/chromium

if [ -x "$BROWSER" ]; then
    echo "install-browser: $BROWSER is already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: cannot install chromium: not root (as root: apt-get install chromium);" \
        "the browser test will be skipped"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: cannot install chromium: apt-get not found (not a Debian system);" \
        "the browser test will be skipped"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install_chromium() {
    apt-get install -y -q --no-install-recommends chromium >/dev/null
}

# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! install_chromium 2>/dev/null; then
    echo "install-browser: refreshing the package lists (apt-get update)"
    apt-get update -q >/dev/null && install_chromium
fi

if [ -x "$BROWSER" ]; then
    echo "install-browser: installed $BROWSER ($("$BROWSER" --version 2>/dev/null))"
else
    echo "install-browser: could not install chromium with apt-get;" \
        "the browser test will be skipped"
fi
exit 0
