"""Where Flower's and Ray's own notices go during `medfed simulate`.

The default console shows medfed's progress and summary only: Flower's notices (its
"`run_simulation` is deprecated" block, printed twice) and Ray's warnings are about the engine,
not the run, so they go to `engine.log` in the run folder and reach the console with --verbose.
Nothing that matters is hidden by this: refusals, dropped sites, rejected updates and privacy
downgrades are medfed's own events (the live display, events.log, the report), and Flower's
errors (ERROR and above) still reach the console.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

ENGINE_LOG = "engine.log"
_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
_LOGGERS = ("flwr", "ray", "py.warnings")


@contextlib.contextmanager
def engine_log(out_dir: Path, *, verbose: bool) -> Iterator[Path]:
    """Send Flower's, Ray's and Python's warnings to out_dir/engine.log for the block; without
    `verbose`, keep them off the console (errors excepted). Everything is restored afterwards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ENGINE_LOG
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    saved: list[tuple[logging.Logger, bool, int]] = []
    saved_handler_levels: list[tuple[logging.Handler, int]] = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(file_handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        if not verbose:
            logger.propagate = False  # the root logger's handler would print a second copy
            for handler in logger.handlers:
                if handler is not file_handler and isinstance(handler, logging.StreamHandler):
                    saved_handler_levels.append((handler, handler.level))
                    handler.setLevel(max(handler.level, logging.ERROR))
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each warning once, into the log (not an error)
            yield path
    finally:
        logging.captureWarnings(False)
        for handler, level in saved_handler_levels:
            handler.setLevel(level)
        for logger, propagate, level in saved:
            logger.removeHandler(file_handler)
            logger.propagate = propagate
            logger.setLevel(level)
        file_handler.close()
