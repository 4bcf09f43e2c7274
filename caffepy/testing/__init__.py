"""Tools for testing layers, public so users can test their own Python layers.

:class:`GradientChecker` is Caffe's: central differences of an objective over
the layer's tops, compared with the layer's backward, elementwise tolerance
``threshold * max(|analytic|, |numeric|, 1)``.
"""

import numpy as np

from caffepy import rng as _rng
from caffepy.blob import Blob
from caffepy.layer import TRAIN


def layer_from_text(text, phase=TRAIN, dtype=np.float64):
    """Create a layer from the text of a ``LayerParameter`` (e.g. ``'type: "ReLU"'``)."""
    from google.protobuf import text_format

    from caffepy.proto import caffe_pb2
    from caffepy.registry import layer_class

    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    if not param.name:
        param.name = param.type.lower() or "layer"
    return layer_class(param.type)(param, phase, dtype)


def make_blobs(*shapes, dtype=np.float64, seed=1701, low=-1.0, high=1.0):
    """Blobs of the given shapes filled with U(low, high) (a fixed seed)."""
    gen = np.random.default_rng(seed)
    blobs = []
    for shape in shapes:
        b = Blob(shape, dtype)
        b.data[...] = gen.uniform(low, high, shape)
        blobs.append(b)
    return blobs


class GradientCheckError(AssertionError):
    pass


class GradientChecker:
    """Numeric gradient checks for a layer's backward (Caffe's GradientChecker).

    Args:
        stepsize: central difference step.
        threshold: relative tolerance (scaled by max(|a|, |n|, 1)).
        seed: the RNG seed set before every forward (so Dropout is repeatable).
        kink, kink_range: skip inputs within kink_range of a non-differentiable
            point (e.g. 0 for ReLU with kink_range 1e-2 ... set kink_range > stepsize).
    """

    def __init__(self, stepsize=1e-2, threshold=1e-3, seed=1701, kink=0.0, kink_range=-1.0):
        self.stepsize = stepsize
        self.threshold = threshold
        self.seed = seed
        self.kink = kink
        self.kink_range = kink_range

    # objective = sum over tops of 0.5 * ||top||^2 (or one element when top_id given)
    def _objective(self, layer, bottom, top, top_id, top_data_id):
        _rng.set_random_seed(self.seed)
        layer.Forward(bottom, top)
        if top_id is None:
            loss = 0.0
            for t in top:
                loss += 0.5 * float(np.sum(t.data.astype(np.float64) ** 2))
                t.diff[...] = t.data
            return loss
        for t in top:
            t.diff[...] = 0
        flat = top[top_id].diff.reshape(-1)
        flat[top_data_id] = 1.0
        return float(top[top_id].data.reshape(-1)[top_data_id])

    def check_gradient(self, layer, bottom, top, check_bottom=None, top_id=None,
                       top_data_id=None, setup=True):
        """Check every bottom (or those in ``check_bottom``) and every param blob.

        Raises GradientCheckError naming the blob and element on a mismatch.
        """
        for blob in list(bottom) + list(top):
            if blob.dtype != layer.dtype:
                raise GradientCheckError(
                    f"{layer.type} layer '{layer.name}' computes in {layer.dtype} but "
                    f"a bottom/top blob is {blob.dtype}: give every blob the layer's dtype"
                )
        if setup:
            _rng.set_random_seed(self.seed)
            layer.SetUp(bottom, top)
        if check_bottom is None:
            check_bottom = list(range(len(bottom)))
        elif isinstance(check_bottom, int):
            check_bottom = [check_bottom]
        while len(layer.param_propagate_down) < len(layer.blobs):
            layer.param_propagate_down.append(True)
        targets = [(f"bottom[{i}]", bottom[i]) for i in check_bottom]
        targets += [(f"param[{j}]", b) for j, b in enumerate(layer.blobs)]
        # Analytic gradients.
        self._objective(layer, bottom, top, top_id, top_data_id)
        for blob in layer.blobs:
            blob.diff[...] = 0
        prop = [i in check_bottom for i in range(len(bottom))]
        for b in bottom:
            b.diff[...] = 0
        layer.Backward(top, prop, bottom)
        analytic = [np.array(b.diff, dtype=np.float64, copy=True) for _, b in targets]
        # Numeric gradients.
        for (label, blob), grad in zip(targets, analytic):
            flat = blob.data.reshape(-1)
            gflat = grad.reshape(-1)
            for k in range(flat.size):
                feature = float(flat[k])
                if self.kink_range > 0 and abs(feature - self.kink) < self.kink_range:
                    continue
                flat[k] = feature + self.stepsize
                plus = self._objective(layer, bottom, top, top_id, top_data_id)
                flat[k] = feature - self.stepsize
                minus = self._objective(layer, bottom, top, top_id, top_data_id)
                flat[k] = feature
                numeric = (plus - minus) / (2.0 * self.stepsize)
                computed = gflat[k]
                scale = max(abs(computed), abs(numeric), 1.0)
                if abs(computed - numeric) > self.threshold * scale:
                    raise GradientCheckError(
                        f"{layer.type} layer '{layer.name}': {label} element {k} "
                        f"(value {feature:.6g}): analytic {computed:.8g} vs numeric "
                        f"{numeric:.8g}"
                    )

    def check_gradient_eltwise(self, layer, bottom, top):
        """For element-wise layers: objective is one top element at a time."""
        _rng.set_random_seed(self.seed)
        layer.SetUp(bottom, top)
        for k in range(top[0].count):
            self.check_gradient(layer, bottom, top, top_id=0, top_data_id=k, setup=False)
