from tests.integration.conftest import server  # noqa: F401 (a real server process)
