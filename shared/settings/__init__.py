"""Typed settings, one class per service, all read from ``PODIUM_*`` environment variables.

Nothing is built at import time: entrypoints call ``IngestSettings()`` etc. and pass the
object to the service's wiring function; tests build their own.

- ``base.py`` — ``PodiumSettings`` (every service) and ``HttpSettings`` (the HTTP edge of
  ingest and the api);
- ``ingest.py``, ``rating.py``, ``api.py`` — each service's class;
- ``client.py`` — ``ClientSettings``, the ``podium`` CLI's and ``shared.client``'s.

Import the classes from here (``from shared.settings import IngestSettings``);
``shared/settings_doc.py`` renders the table of docs/configuration.md from them.
"""

from shared.settings.api import ApiSettings
from shared.settings.base import HttpSettings, PodiumSettings
from shared.settings.client import ClientSettings
from shared.settings.ingest import BOARD_PATTERN, IngestSettings
from shared.settings.rating import RatingSettings

__all__ = [
    "BOARD_PATTERN",
    "ApiSettings",
    "ClientSettings",
    "HttpSettings",
    "IngestSettings",
    "PodiumSettings",
    "RatingSettings",
]
