from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "models" / "en-de"


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    return DEFAULT_BUNDLE
