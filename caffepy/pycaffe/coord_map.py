"""Coordinate maps between tops of a NetSpec, and the Crop layer that aligns them
(pycaffe's coord_map, used by FCN-style nets).

A map is ``(axis, a, b)``: coordinate ``x`` of the input maps to ``a * x + b`` of
the output, from spatial axis ``axis`` on (``None``: any axis, as for pointwise
layers). ``a`` and ``b`` are scalars or one value per spatial axis. A
convolution or pooling with stride ``s``, kernel extent ``k`` (dilated) and pad
``p`` maps ``(1/s, (p - (k-1)/2) / s)``; a deconvolution is its inverse
``(s, (k-1)/2 - p)``; a Crop with offset ``o`` maps ``(1, -o)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caffepy.errors import CaffepyError
from caffepy.pycaffe.net_spec import Function, Top
from caffepy.pycaffe.net_spec import layers as L

#: Layers that keep coordinates where they are.
PASS_THROUGH_LAYERS = [
    "AbsVal",
    "BatchNorm",
    "Bias",
    "BNLL",
    "Dropout",
    "Eltwise",
    "ELU",
    "Log",
    "LRN",
    "Exp",
    "MVN",
    "Power",
    "ReLU",
    "PReLU",
    "Scale",
    "Sigmoid",
    "Split",
    "TanH",
    "Threshold",
]

CoordMap = tuple[Any, Any, Any]


class UndefinedMapException(CaffepyError):
    """The layer type has no coordinate map (InnerProduct, ...)."""


class AxisMismatchException(CaffepyError):
    """Two maps start at different spatial axes and cannot compose."""


class CropError(CaffepyError, AssertionError):
    """A crop that cannot be made: scales differ, or the offset is negative or
    fractional (an AssertionError, as pycaffe raises)."""


def conv_params(fn: Function) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(axis, stride, kernel extent, pad)`` of a Convolution, Deconvolution,
    Im2col or Pooling Function; the extent includes dilation."""
    p = fn.params.get("convolution_param", fn.params)
    legacy = {"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"}
    used = legacy & set(p)
    if used:
        raise CaffepyError(
            f"{fn.type_name}: coordinate maps need kernel_size/stride/pad, not the "
            f"legacy {sorted(used)}"
        )
    if "kernel_size" not in p:
        raise CaffepyError(f"{fn.type_name}: no kernel_size given")
    kernel = np.array(p["kernel_size"], ndmin=1)
    dilation = np.array(p.get("dilation", 1), ndmin=1)
    stride = np.array(p.get("stride", 1), ndmin=1)
    pad = np.array(p.get("pad", 0), ndmin=1)
    return p.get("axis", 1), stride, (kernel - 1) * dilation + 1, pad


def crop_params(fn: Function) -> tuple[int, np.ndarray]:
    """``(axis, offset)`` of a Crop Function (axis 2 by default)."""
    p = fn.params.get("crop_param", fn.params)
    return p.get("axis", 2), np.array(p.get("offset", 0), ndmin=1)


def coord_map(fn: Function) -> CoordMap:
    """The map from a layer's bottoms to its tops (see the module docstring).

    Raises:
        UndefinedMapException: a layer type that does not map coordinates.
    """
    t = fn.type_name
    if t in ("Convolution", "Pooling", "Im2col"):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if t == "Deconvolution":
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if t in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if t == "Crop":
        axis, offset = crop_params(fn)
        # NOTE: the map's axis counts from the first spatial one, one below Crop's.
        return axis - 1, 1, -offset
    raise UndefinedMapException(f"{t} layers have no coordinate map")


def compose(base_map: CoordMap, next_map: CoordMap) -> CoordMap:
    """``base`` after ``next``: ``x -> a1 * (a2 * x + b2) + b1``."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException(
            f"cannot compose coordinate maps on axes {ax1} and {ax2}"
        )
    return ax, a1 * a2, a1 * b2 + b1


def inverse(cmap: CoordMap) -> CoordMap:
    """The map back from output to input coordinates."""
    ax, a, b = cmap
    return ax, 1 / a, -b / a


def _mapped_bottoms(top: Top) -> tuple:
    # NOTE: a Crop's second bottom only gives the size; coordinates come from
    # the first.
    if top.fn.type_name == "Crop":
        return top.fn.inputs[:1]
    return top.fn.inputs


def _ancestors(start: Top) -> dict:
    """Every top ``start`` depends on through mappable layers -> the map from it
    to ``start``."""
    maps = {start: (None, 1, 0)}
    frontier = [start]
    while frontier:
        top = frontier.pop()
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(top):
            maps[bottom] = compose(maps[top], step)
            frontier.append(bottom)
    return maps


def coord_map_from_to(top_from: Top, top_to: Top) -> CoordMap:
    """The map from coordinates of ``top_from`` to those of ``top_to``, through a
    top both descend from.

    Raises:
        RuntimeError: the tops share no ancestor through mappable layers.
    """
    from_maps = _ancestors(top_from)
    to_maps = {top_to: (None, 1, 0)}
    frontier = [top_to]
    while frontier:
        top = frontier.pop(0)
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(top):
            to_maps[bottom] = compose(to_maps[top], step)
            frontier.append(bottom)
    raise RuntimeError(
        "Could not compute map between tops; are they connected by spatial layers?"
    )


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop layer cutting ``top_from`` to the extent of ``top_to``, with the
    offset the coordinate map between them gives.

    Raises:
        CropError: the tops differ in scale, or the offset is negative or not
            an integer.
    """
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.asarray(a), np.asarray(b)
    if not (a == 1).all():
        raise CropError(f"scale mismatch on crop (a = {a})")
    if not (b <= 0).all():
        raise CropError(f"cannot crop negative offset (b = {b})")
    if not (np.round(b) == b).all():
        raise CropError(f"cannot crop noninteger offset (b = {b})")
    offset = [int(v) for v in -np.round(b).astype(int).ravel()]
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=offset))


__all__ = [
    "AxisMismatchException",
    "CropError",
    "PASS_THROUGH_LAYERS",
    "UndefinedMapException",
    "compose",
    "conv_params",
    "coord_map",
    "coord_map_from_to",
    "crop",
    "crop_params",
    "inverse",
]
