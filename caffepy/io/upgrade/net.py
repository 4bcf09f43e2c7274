"""The net driver (Caffe's ``UpgradeNetAsNeeded``): every step in Caffe's
order, then the input-field and BatchNorm upgrades."""

from caffepy.errors import PrototxtError
from caffepy.io.upgrade.common import log
from caffepy.io.upgrade.v0 import _needs_v0_to_v1, _upgrade_v0_net
from caffepy.io.upgrade.v1 import (
    _needs_data_upgrade,
    _needs_v1_to_v2,
    _upgrade_data_transformation,
    _upgrade_v1_net,
)
from caffepy.proto import caffe_pb2


def _needs_input_upgrade(net):
    return len(net.input) > 0


def _batch_norm_needs_upgrade(layer):
    return (
        layer.type == "BatchNorm"
        and len(layer.param) == 3
        and not all(p.lr_mult == 0 and p.decay_mult == 0 for p in layer.param)
    )


def _needs_batch_norm_upgrade(net):
    return any(_batch_norm_needs_upgrade(layer) for layer in net.layer)


def net_needs_upgrade(net_param):
    """Whether :func:`upgrade_net` would change ``net_param`` (Caffe's NetNeedsUpgrade).

    Unlike Caffe, a BatchNorm layer whose three param specs already say
    ``lr_mult: 0 decay_mult: 0`` does not count: upgrading it changes nothing.
    """
    return (
        _needs_v0_to_v1(net_param)
        or _needs_data_upgrade(net_param)
        or _needs_v1_to_v2(net_param)
        or _needs_input_upgrade(net_param)
        or _needs_batch_norm_upgrade(net_param)
    )


# --------------------------------------------------------------------- inputs
def _check_input(net, source):
    """Refuse net-level inputs whose shapes do not fit their number."""
    n_inputs = len(net.input)
    if len(net.input_shape) and len(net.input_shape) != n_inputs:
        raise PrototxtError(
            f"the net declares {n_inputs} input(s) but {len(net.input_shape)} "
            "input_shape(s); give one input_shape per input",
            path=source,
        )
    if not len(net.input_shape) and len(net.input_dim) not in (0, 4 * n_inputs):
        raise PrototxtError(
            f"the net declares {n_inputs} input(s) but {len(net.input_dim)} "
            f"input_dim value(s); expected {4 * n_inputs} (four per input: N C H W)",
            path=source,
        )


def _upgrade_input(net):
    """Caffe's UpgradeNetInput: net-level inputs become a leading Input layer.

    With neither ``input_shape`` nor ``input_dim`` (a legacy ``.caffemodel``
    keeps only the input names) the inputs are simply removed.
    """
    n_inputs = len(net.input)
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if has_shape or has_dim:
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        layer.top.extend(net.input)
        for i in range(n_inputs):
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i : 4 * i + 4])
        net.layer.insert(0, layer)
    for name in ("input", "input_shape", "input_dim"):
        net.ClearField(name)


# ------------------------------------------------------------------ BatchNorm
def _upgrade_batch_norm(net):
    """Caffe's UpgradeNetBatchNorm: freeze the three statistics blobs."""
    for layer in net.layer:
        if _batch_norm_needs_upgrade(layer):
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


# ----------------------------------------------------------------- the driver
def upgrade_net(net_param, source=None):
    """Upgrade a ``NetParameter`` in place to the current format (UpgradeNetAsNeeded).

    Args:
        net_param: a ``caffe_pb2.NetParameter`` as parsed from a prototxt or a
            ``.caffemodel``; rewritten in place.
        source: the file it came from, for log lines and error messages.

    Returns:
        bool: whether anything changed.

    Raises:
        PrototxtError: a definition Caffe could not upgrade either (unknown V0
            type, padding feeding a non-conv layer, input dims that do not come
            in fours) or would silently mangle (``layer`` mixed with ``layers``).
        UnsupportedError: a legacy field caffepy has no mapping for.
    """
    name = source if source is not None else "<net>"
    if len(net_param.layer) and len(net_param.layers):
        raise PrototxtError(
            f"the net mixes the current 'layer' ({len(net_param.layer)}) and the "
            f"legacy 'layers' ({len(net_param.layers)}) fields; use one (Caffe "
            "would ignore every 'layer' entry)",
            path=source,
        )
    if _needs_input_upgrade(net_param):
        _check_input(net_param, source)  # before any step changes the net
    changed = False
    if _needs_v0_to_v1(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "V0LayerParameter: %s",
            name,
        )
        if _upgrade_v0_net(net_param, source):
            log.info(
                "Successfully upgraded file specified using deprecated V0LayerParameter"
            )
        else:
            log.error(
                "Warning: had one or more problems upgrading V0NetParameter to "
                "NetParameter (see above); continuing anyway."
            )
        log.warning(
            "Note that future Caffe releases will not support V0NetParameter; use "
            "'caffepy upgrade_net_proto_text' for prototxt and 'caffepy "
            "upgrade_net_proto_binary' for model weights to upgrade this and any "
            "other net protos to the new format."
        )
        changed = True
    if _needs_data_upgrade(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "transformation parameters: %s",
            name,
        )
        _upgrade_data_transformation(net_param)
        log.info(
            "Successfully upgraded file specified using deprecated data "
            "transformation parameters."
        )
        log.warning(
            "Note that future Caffe releases will only support transform_param "
            "messages for transformation fields."
        )
        changed = True
    if _needs_v1_to_v2(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "V1LayerParameter: %s",
            name,
        )
        _upgrade_v1_net(net_param, source)
        log.info(
            "Successfully upgraded file specified using deprecated V1LayerParameter"
        )
        changed = True
    if _needs_input_upgrade(net_param):
        log.info(
            "Attempting to upgrade input file specified using deprecated "
            "input fields: %s",
            name,
        )
        _upgrade_input(net_param)
        log.info("Successfully upgraded file specified using deprecated input fields.")
        log.warning(
            "Note that future Caffe releases will only support input layers and "
            "not input fields."
        )
        changed = True
    if _needs_batch_norm_upgrade(net_param):
        log.info(
            "Attempting to upgrade batch norm layers using deprecated params: %s",
            name,
        )
        _upgrade_batch_norm(net_param)
        log.info("Successfully upgraded batch norm layers using deprecated params.")
        changed = True
    return changed


def upgrade_net_binary(net_param, source=None):
    """Upgrade a ``NetParameter`` read from a ``.caffemodel``; see :func:`upgrade_net`.

    The same steps as for a prototxt: a V0 or V1 model's learned blobs travel
    with their layers into ``layer[i].blobs``.
    """
    return upgrade_net(net_param, source if source is not None else "<caffemodel>")
