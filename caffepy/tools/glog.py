"""Logging in Caffe's glog format, so Caffe's own log parsers read our logs."""

from __future__ import annotations

import logging
import os
import sys
import time


class GlogFormatter(logging.Formatter):
    """Caffe's glog line prefix: ``I1126 09:20:00.123456  4242 solver.py:42] ...``
    (level letter, month and day, time with microseconds, process id, file:line)."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        usec = int((record.created % 1) * 1e6)
        level = record.levelname[0] if record.levelname else "I"
        prefix = (
            f"{level}{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{usec:06d} {record.process:5d} "
            f"{record.filename}:{record.lineno}]"
        )
        return f"{prefix} {record.getMessage()}"


def setup_logging(log_file: str | None = None, quiet: bool = False) -> None:
    """Send the ``caffepy`` logger to stderr (INFO, or WARNING when ``quiet``) and,
    when ``log_file`` is given, to that file too, both in glog format."""
    root = logging.getLogger("caffepy")
    root.handlers.clear()
    root.setLevel(logging.INFO)
    root.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(GlogFormatter())
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    root.addHandler(handler)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(GlogFormatter())
        root.addHandler(fh)
