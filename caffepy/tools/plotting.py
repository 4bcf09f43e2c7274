"""Where a figure is written: its format, checked before any work is done."""

from __future__ import annotations

import os

from caffepy.errors import CaffepyError


def image_format(out_path: str | os.PathLike, what: str = "--out") -> str | None:
    """The format matplotlib writes ``out_path`` in (its extension), or None for
    a path without one (matplotlib's default, PNG).

    Raises:
        CaffepyError: an extension matplotlib cannot write, naming it and the
            supported ones.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ext = os.path.splitext(os.fspath(out_path))[1].lower().lstrip(".")
    if not ext:
        return None
    supported = Figure().canvas.get_supported_filetypes()
    if ext not in supported:
        names = ", ".join("." + e for e in sorted(supported))
        raise CaffepyError(
            f"{what} {os.fspath(out_path)}: unknown image extension '.{ext}'; "
            f"supported: {names}"
        )
    return ext
