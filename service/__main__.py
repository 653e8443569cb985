"""``python -m service``: run the translation service with uvicorn (settings from SERVICE_*),
or, with SERVICE_WORKERS > 1, the supervisor of that many."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from service.logs import configure_logging
from service.settings import Settings
from service.workers import Supervisor, worker_index


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per problem, naming the variables
        problems = "; ".join(
            (f"SERVICE_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors())
        sys.exit(f"invalid configuration: {problems}")
    configure_logging(settings.log_level)
    if settings.workers > 1 and worker_index() is None:
        sys.exit(Supervisor(settings).run())
    from service.server import serve  # not in the supervisor: it loads no model

    serve(settings)


if __name__ == "__main__":
    main()
