import os
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


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skip is a failure: a test that could not run proves nothing, and a missing
    tool must not turn into a green run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if _under_ci() and skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if _under_ci() and skipped:
        terminalreporter.section("skips fail under CI", red=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            terminalreporter.line(f"{report.nodeid}: {reason}")
