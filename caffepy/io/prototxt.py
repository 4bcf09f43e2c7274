"""Read and write prototxt (protobuf text format) and binary Caffe protos.

Every parse error becomes a :class:`~caffepy.errors.PrototxtError` carrying the
file, line and column, with "did you mean" suggestions for unknown field and
enum names taken from the schema itself. Nets and solvers are upgraded from
legacy formats on load, as Caffe's ``ReadNetParamsFromTextFileOrDie`` does.
"""

import functools
import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from caffepy.errors import InputFileError, PrototxtError, WeightsError, did_you_mean
from caffepy.io.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    read_regular_bytes,
)

_LOC = re.compile(r"^(\d+):(\d+)\s*:\s*(.*)$", re.S)
_NO_FIELD = re.compile(r'Message type "caffe\.(\w+)" has no field named "(\w+)"')
_NO_ENUM = re.compile(r'Enum type "caffe\.([\w.]+)" has no value named (\w+)')


def _pb2():
    from caffepy.proto import caffe_pb2

    return caffe_pb2


def _message_fields(type_name):
    desc = _pb2().DESCRIPTOR.message_types_by_name.get(type_name)
    if desc is None:
        return []
    return [f.name for f in desc.fields]


def _enum_values(type_name):
    pb2 = _pb2()
    parts = type_name.split(".")
    desc = pb2.DESCRIPTOR.enum_types_by_name.get(parts[0])
    if desc is None and len(parts) == 2:
        msg = pb2.DESCRIPTOR.message_types_by_name.get(parts[0])
        desc = msg.enum_types_by_name.get(parts[1]) if msg else None
    return [v.name for v in desc.values] if desc else []


def parse_text(text, message, source="<string>"):
    """Parse protobuf text into ``message``; errors name source:line:column."""
    try:
        text_format.Parse(text, message, allow_unknown_extension=False)
    except text_format.ParseError as err:
        msg = str(err)
        line = err.GetLine() if hasattr(err, "GetLine") else None
        col = err.GetColumn() if hasattr(err, "GetColumn") else None
        m = _LOC.match(msg)
        if m:
            line, col, msg = int(m.group(1)), int(m.group(2)), m.group(3)
        m = _NO_FIELD.search(msg)
        if m:
            msg = f"{m.group(1)} has no field named '{m.group(2)}'" + did_you_mean(
                m.group(2), _message_fields(m.group(1))
            )
        m = _NO_ENUM.search(msg)
        if m:
            msg = f"{m.group(1)} has no value named '{m.group(2)}'" + did_you_mean(
                m.group(2), _enum_values(m.group(1))
            )
        raise PrototxtError(msg.strip(), source, line, col) from None
    return message


def _read_text(path, what):
    try:
        return read_regular_bytes(path, what).decode("utf-8")
    except InputFileError:
        raise
    except FileNotFoundError:
        raise PrototxtError(f"{what} file not found", path) from None
    except IsADirectoryError:
        raise PrototxtError(f"expected a {what} file, got a directory", path) from None
    except UnicodeDecodeError:
        raise PrototxtError(
            f"not a text prototxt (binary data?); a {what} file is protobuf text",
            path,
        ) from None
    except OSError as err:
        raise PrototxtError(f"cannot read {what} file: {err.strerror}", path) from None


def parse_net_text(text, source="<string>", upgrade=True):
    net = parse_text(text, _pb2().NetParameter(), source)
    if upgrade:
        _upgrade_net(net, source)
    return net


def read_net(path, upgrade=True):
    """Read a net prototxt into an (upgraded) ``NetParameter``."""
    path = os.fspath(path)
    return parse_net_text(_read_text(path, "net"), path, upgrade)


def read_solver(path, upgrade=True):
    """Read a solver prototxt into an (upgraded) ``SolverParameter``."""
    path = os.fspath(path)
    solver = parse_text(_read_text(path, "solver"), _pb2().SolverParameter(), path)
    if upgrade:
        _upgrade_solver(solver, path)
    return solver


def _upgrade_net(net, source):
    try:
        from caffepy.io import upgrade
    except ImportError:  # pragma: no cover - during bootstrap
        return False
    return upgrade.upgrade_net(net, source=source)


def _upgrade_solver(solver, source):
    try:
        from caffepy.io import upgrade
    except ImportError:  # pragma: no cover
        return False
    return upgrade.upgrade_solver(solver, source=source)


def read_weights(path, upgrade=True):
    """Read a binary ``.caffemodel`` (NetParameter with blobs)."""
    path = os.fspath(path)
    try:
        raw = read_regular_bytes(path, "weights")
    except InputFileError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except OSError as err:
        raise WeightsError(
            f"{path}: cannot read weights file: {err.strerror}"
        ) from None
    net = _pb2().NetParameter()
    try:
        net.ParseFromString(raw)
    except DecodeError:
        raise WeightsError(
            f"{path}: not a Caffe weights file (a binary NetParameter); it is "
            "truncated or another kind of file"
        ) from None
    if not text_fields_decode(net):
        raise WeightsError(
            f"{path}: a name or type in it is not valid UTF-8 text; the file is corrupt"
        )
    if not net.layer and not net.layers:
        raise WeightsError(f"{path}: holds no layers; is it a .caffemodel?")
    if upgrade:
        try:
            from caffepy.io import upgrade as up

            up.upgrade_net(net, source=path)
        except ImportError:  # pragma: no cover
            pass
    return net


def _is_repeated(field):
    if hasattr(field, "is_repeated"):  # protobuf >= 5.28
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def text_fields_decode(message):
    """Whether every string field of a parsed binary message is valid UTF-8.

    NOTE: protobuf decodes a proto2 string field only when it is read, so a
    corrupt file parses "fine" and fails later with a UnicodeDecodeError; reading
    every set field once (float arrays are not copied) finds it up front.
    """
    from google.protobuf.descriptor import FieldDescriptor

    string = FieldDescriptor.TYPE_STRING
    try:
        stack = [message]
        while stack:
            msg = stack.pop()
            for field, value in msg.ListFields():
                if field.message_type is not None:
                    if _is_repeated(field):
                        stack.extend(value)
                    else:
                        stack.append(value)
                elif field.type == string:
                    # (upb lists an undecodable string as bytes; reading raises)
                    values = getattr(msg, field.name)
                    if _is_repeated(field) and any(
                        isinstance(v, bytes) for v in values
                    ):
                        return False
                    if isinstance(value, bytes) or isinstance(values, bytes):
                        return False
    except UnicodeDecodeError:
        return False
    return True


def write_text(path, message):
    """Write a message as prototxt, atomically."""
    atomic_write_text(path, text_format.MessageToString(message))


def write_binary(path, message):
    atomic_write_bytes(path, message.SerializeToString())


_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)"""
    r"""|(?P<field>\b[A-Za-z_]\w*)\s*(?=[:{])"""
    r"""|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<open>\{)|(?P<close>\})|(?P<newline>\n)"""
)


@functools.lru_cache(maxsize=8)
def _locations(text):
    """One pass over a prototxt: ({layer name: line}, {top-level field: line}).

    A layer's line is that of the first ``name: "..."`` inside a block (at depth
    one if any, as ``layer { name: ... }``); strings and comments are skipped, so
    braces inside them do not count.
    """
    line, depth = 1, 0
    names, deep_names, fields = {}, {}, {}
    after_name = None  # depth at which a ``name`` field was just seen
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "newline":
            line += 1
        elif kind == "open":
            depth += 1
            after_name = None
        elif kind == "close":
            depth = max(depth - 1, 0)
            after_name = None
        elif kind == "field":
            word = m.group("field")
            if depth == 0:
                fields.setdefault(word, line)
            after_name = depth if word == "name" else None
        elif kind == "string":
            if after_name is not None and after_name > 0:
                value = m.group("string")[1:-1]
                target = names if after_name == 1 else deep_names
                target.setdefault(value, line)
            after_name = None
    for key, value in deep_names.items():
        names.setdefault(key, value)
    return names, fields


def layer_location(text, layer_name):
    """1-based line of the layer whose ``name:`` is ``layer_name`` in ``text``, or None.

    Only a ``name:`` inside a block counts (the net's own top-level ``name:`` may
    be the same word). The whole text is scanned once and remembered, so naming
    every layer of a large net stays linear.
    """
    if not text:
        return None
    return _locations(text)[0].get(layer_name)


def field_location(text, field):
    """1-based line of the top-level field ``field`` (``base_lr: 0.1``) in
    ``text``, or None."""
    if not text:
        return None
    return _locations(text)[1].get(field)
