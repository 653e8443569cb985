"""The serving side never loads PyTorch or the exporter (the image ships without them)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_service_imports_neither_torch_nor_the_exporter() -> None:
    code = (
        "import sys, service.app, service.__main__, service.server, service.translator,"
        " service.decoding;"
        "bad = sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('torch', 'model_export'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == ""
