"""The exception types every user-facing error uses.

Each message is one line a person can act on: what was received, what was
expected, and where (file:line:column for prototxt, the layer's name and type for
a layer). The CLI prints ``str(err)`` and exits non-zero; the Python API raises
the same types.
"""

import difflib


class CaffepyError(Exception):
    """Base class of every error caffepy raises on purpose."""

    def in_layer(self, layer, where="", note=""):
        """Say which layer the error happened in, once: prefix the message with the
        layer's type and name (and ``where``, e.g. " (net.prototxt:12)"), append
        ``note``. The exception keeps its type; returns ``self`` to re-raise.
        """
        if getattr(self, "_in_layer", False):
            return self
        self._in_layer = True
        msg = str(self)
        head = f"{getattr(layer, 'type', '?')} layer '{getattr(layer, 'name', '?')}'"
        if msg.startswith(head + ": "):
            msg = msg[len(head) + 2 :]
        self.args = (f"{head}{where}: {msg}{note}",)
        return self


class PrototxtError(CaffepyError, ValueError):
    """A prototxt (or binary proto) file that cannot be parsed or upgraded."""

    def __init__(self, message, path=None, line=None, column=None):
        self.path, self.line, self.column = path, line, column
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + message)


class NetError(CaffepyError, ValueError):
    """A net definition that cannot be built (unknown bottom, duplicate top, ...)."""


class LayerError(CaffepyError, ValueError):
    """A layer's parameters or inputs are wrong; the message names the layer."""

    def __init__(self, layer, message):
        name = getattr(layer, "name", None) or "?"
        ltype = getattr(layer, "type", None) or "?"
        self.layer_name, self.layer_type = name, ltype
        super().__init__(f"{ltype} layer '{name}': {message}")


class ShapeError(LayerError):
    """Bottom shapes that do not fit the layer (or each other)."""


class UnsupportedError(CaffepyError, NotImplementedError):
    """A Caffe feature caffepy does not implement (yet); the message names it."""


class WeightsError(CaffepyError, ValueError):
    """A .caffemodel that is unreadable or does not fit the net."""


class SolverError(CaffepyError, ValueError):
    """A solver definition or solver state that is wrong or does not fit."""


class DataError(CaffepyError, ValueError):
    """A database, image, mean file or Datum that is missing or malformed."""


class DivergenceError(CaffepyError, FloatingPointError):
    """Training produced a non-finite loss or parameter."""


class SnapshotError(CaffepyError, OSError):
    """A snapshot could not be written (a full disk, ...); earlier ones are intact."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class ResourceError(CaffepyError, MemoryError):
    """Not enough memory (or another resource) for what was asked."""


class GpuUnavailableError(CaffepyError, RuntimeError):
    """GPU mode was asked for but cannot run: no CUDA device, no such device, or
    the GPU packages are missing (``pip install 'caffepy[gpu]'``)."""


class ParallelError(CaffepyError, RuntimeError):
    """Data-parallel training cannot go on: no mpi4py for N > 1 ranks, ranks that
    disagree on the solver or the net, or a rank lost (dead or hung)."""


def did_you_mean(word, choices, n=3):
    """Return ' (did you mean X?)' for the closest names, or '' if none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class InputFileError(CaffepyError, OSError):
    """An input or output path that is not a regular file (a FIFO, a device, a
    directory, a symbolic link where a file is written), refused before it is read
    or replaced."""


class SnapshotPrefixInUse(SnapshotError):
    """Another live run holds the lock of this ``snapshot_prefix``."""


class Terminated(CaffepyError):
    """The process received SIGTERM before training could stop cleanly."""

    exit_status = 143
    _in_layer = True  # (not about the layer that was running)


_EXPECTED = (CaffepyError, OSError, MemoryError)


def _culprit_frame(err):
    """(file, line) of the innermost frame of ``err``'s traceback outside
    caffepy, else the innermost frame; None without a traceback."""
    import os
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    outside = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
    frame = (outside or frames)[-1]
    return frame.filename, frame.lineno


def one_line(err):
    """The one line the CLI prints for ``err``.

    caffepy's errors (and OSError, MemoryError) are already sentences; any other
    exception is a bug or an unexpected input: say its type, where it was raised
    and how to see the traceback.
    """
    if isinstance(err, _EXPECTED):
        text = str(err) or type(err).__name__
    else:
        where = _culprit_frame(err)
        at = f" at {where[0]}:{where[1]}" if where else ""
        text = (
            f"unexpected {type(err).__name__}{at}: {err} (run with --debug or "
            "CAFFEPY_DEBUG=1 for the traceback)"
        )
    return " ".join(text.split())
