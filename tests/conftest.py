from pathlib import Path

import pytest

from service.bundle import read_manifest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "models" / "en-de"


def shipped_files() -> tuple[str, str]:
    """(encoder, decoder) file names of the variant the service loads by default."""
    manifest = read_manifest(DEFAULT_BUNDLE)
    files = manifest.variants[manifest.resolve_variant("auto")]
    return files["encoder"], files["decoder"]


ENCODER_FILE, DECODER_FILE = shipped_files()


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    return DEFAULT_BUNDLE
