#!/bin/sh
# Install a Debian package some tests need: `install-debian.sh PACKAGE BINARY` (chromium for
# the playground's browser test, haproxy for the rolling-restart test, prometheus for the
# dashboard and rules test, gettext for msgfmt in the catalog pre-translation test).
# Always exits 0: when it cannot be installed, it says why and those tests skip.
set -u

PACKAGE=$1
BINARY=$2

if [ -x "$BINARY" ]; then
    echo "install-debian: $BINARY is already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian: cannot install $PACKAGE: not root (as root: apt-get install $PACKAGE);" \
        "the tests that need it will be skipped"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian: cannot install $PACKAGE: apt-get not found (not a Debian system);" \
        "the tests that need it will be skipped"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -q --no-install-recommends "$PACKAGE" >/dev/null
}

# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! install 2>/dev/null; then
    echo "install-debian: refreshing the package lists (apt-get update)"
    apt-get update -q >/dev/null && install
fi

if [ -x "$BINARY" ]; then
    echo "install-debian: installed $BINARY"
else
    echo "install-debian: could not install $PACKAGE with apt-get;" \
        "the tests that need it will be skipped"
fi
exit 0
