"""The single place that configures logging for the ``easyr1`` command and its Ray workers."""

from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners and notebooks swap it out)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int | None = None, *, rich_console: bool = True) -> None:
    """Configure the root ``easyr1`` logger once.

    ``level`` defaults to the ``EASYR1_LOG_LEVEL`` environment variable, else INFO. With ``rich_console`` the
    records go through rich's handler so they interleave cleanly with progress bars.
    """
    global _CONFIGURED
    if level is None:
        level = os.environ.get("EASYR1_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    logger = logging.getLogger("easyr1")
    logger.setLevel(level)
    if _CONFIGURED:
        return
    handler: logging.Handler
    if rich_console and sys.stderr.isatty():
        try:
            from rich.logging import RichHandler

            handler = RichHandler(show_path=False, rich_tracebacks=False, log_time_format="%H:%M:%S")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:  # rich is a core dependency; this only guards odd installs
            handler = _CurrentStderrHandler()
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
    _CONFIGURED = True
