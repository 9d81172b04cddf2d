"""`python -m lf_dataplane` / `lf-ingestor`: run the HTTP ingestor with settings from the environment."""

from __future__ import annotations

import logging.config
import os
import sys

from lf_dataplane.observability.jsonlogs import logging_config
from lf_dataplane.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        logging.config.dictConfig(logging_config("info"))
        logging.getLogger("lf_dataplane").error("bad settings", extra={"fields": {"reason": str(exc)}})
        return 2
    logging.config.dictConfig(logging_config(settings.log_level))
    from lf_dataplane.http.server import serve  # imports granian; after the settings are known good

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
