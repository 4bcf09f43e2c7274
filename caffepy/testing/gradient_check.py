"""Caffe's GradientChecker: a layer's backward against central differences.

The checker puts an objective on the layer's tops and compares the gradient the
layer's ``Backward`` computes with a numeric one, element by element, with the
tolerance ``threshold * max(|analytic|, |numeric|, 1)`` (BVLC's
``test_gradient_check_util.hpp``). Three modes, as in Caffe:

- :meth:`GradientChecker.check_gradient`: objective ``0.5 * sum(top**2)`` over all
  tops; every bottom and parameter element is perturbed once. O(n) forwards.
- :meth:`GradientChecker.check_gradient_exhaustive`: one objective per top element
  (``top[i][j]``), each checked as above. O(n²) forwards; for layers where
  ``sum(top**2)`` is constant (BatchNorm, MVN).
- :meth:`GradientChecker.check_gradient_eltwise`: for element-wise layers (neuron
  layers, ``d top[j] / d bottom[k] = 0`` for ``j != k``): one objective per top
  element, only ``bottom[j]`` is perturbed and every other analytic entry must be
  zero. O(n) forwards.

Data is read and written through the blobs' ``cpu_data``/``mutable_cpu_data``
accessors at each step, so the checker also works in GPU mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from caffepy import rng as _rng
from caffepy.blob import Blob
from caffepy.layer import Layer

__all__ = ["GradientCheckError", "GradientChecker"]


class GradientCheckError(AssertionError):
    """An analytic gradient disagrees with the numeric one (names blob and element)."""


class GradientChecker:
    """Numeric gradient checks for a layer's backward (Caffe's GradientChecker).

    Args:
        stepsize: central difference step.
        threshold: relative tolerance (scaled by ``max(|analytic|, |numeric|, 1)``).
        seed: the RNG seed set before every forward (so Dropout is repeatable).
        kink: a non-differentiable point of the layer (e.g. 0 for ReLU).
        kink_range: inputs closer than this to ``kink`` are not checked (negative:
            check everything). Make it larger than ``stepsize``.
    """

    def __init__(
        self,
        stepsize: float = 1e-2,
        threshold: float = 1e-3,
        seed: int = 1701,
        kink: float = 0.0,
        kink_range: float = -1.0,
    ) -> None:
        self.stepsize = stepsize
        self.threshold = threshold
        self.seed = seed
        self.kink = kink
        self.kink_range = kink_range

    # -- public modes ------------------------------------------------------------
    def check_gradient(
        self,
        layer: Layer,
        bottom: Sequence[Blob],
        top: Sequence[Blob],
        check_bottom: int | Sequence[int] | None = None,
        top_id: int | None = None,
        top_data_id: int | None = None,
        setup: bool = True,
    ) -> None:
        """Check the bottoms (all, or those in ``check_bottom``) and every param blob.

        Args:
            layer: the layer under test (set up here unless ``setup`` is False).
            bottom: its input blobs, in the layer's dtype.
            top: its output blobs, in the layer's dtype.
            check_bottom: index or indices of the bottoms to check; None = all.
            top_id: with ``top_data_id``, the objective is the single element
                ``top[top_id].flat[top_data_id]`` instead of ``0.5 * sum(top**2)``.
            top_data_id: see ``top_id``.
            setup: call ``layer.SetUp(bottom, top)`` first.

        Raises:
            GradientCheckError: naming the blob and element on the first mismatch.
        """
        self._check_dtypes(layer, bottom, top)
        if setup:
            _rng.set_random_seed(self.seed)
            layer.SetUp(bottom, top)
        indices = _bottom_indices(check_bottom, len(bottom))
        self._check_single(
            layer, bottom, top, indices, top_id, top_data_id, element_wise=False
        )

    def check_gradient_exhaustive(
        self,
        layer: Layer,
        bottom: Sequence[Blob],
        top: Sequence[Blob],
        check_bottom: int | Sequence[int] | None = None,
    ) -> None:
        """Check with one objective per top element, every top (Caffe's exhaustive).

        Needed where ``0.5 * sum(top**2)`` is constant in the input (BatchNorm,
        MVN normalise it away). Costs ``top.count`` full checks.

        Raises:
            GradientCheckError: on the first mismatch.
        """
        self._check_dtypes(layer, bottom, top)
        _rng.set_random_seed(self.seed)
        layer.SetUp(bottom, top)
        if not top:
            raise GradientCheckError("exhaustive mode needs at least one top blob")
        indices = _bottom_indices(check_bottom, len(bottom))
        for i, blob in enumerate(top):
            for j in range(blob.count):
                self._check_single(
                    layer, bottom, top, indices, i, j, element_wise=False
                )

    def check_gradient_eltwise(
        self, layer: Layer, bottom: Sequence[Blob], top: Sequence[Blob]
    ) -> None:
        """Check an element-wise layer: perturb ``bottom[j]``, read ``top[j]`` only.

        For layers where ``d top[j] / d bottom[k] = 0`` when ``j != k`` (neuron
        layers). Every top element is an objective of its own; the analytic
        gradient of its bottom element is compared with central differences and
        every other analytic entry must be zero. O(n) forwards, where the full
        check of each top element would be O(n²).

        Raises:
            GradientCheckError: on a mismatch, or when the layer has parameter
                blobs or a bottom whose count differs from the top's.
        """
        self._check_dtypes(layer, bottom, top)
        _rng.set_random_seed(self.seed)
        layer.SetUp(bottom, top)
        if not top:
            raise GradientCheckError("element-wise mode needs at least one top blob")
        if len(layer.blobs):
            raise GradientCheckError(
                f"{layer.type} layer '{layer.name}' has {len(layer.blobs)} parameter "
                "blob(s): element-wise mode checks parameter-free layers only; use "
                "check_gradient"
            )
        indices = list(range(len(bottom)))
        for i, blob in enumerate(top):
            for b in bottom:
                if b.count != blob.count:
                    raise GradientCheckError(
                        f"{layer.type} layer '{layer.name}': element-wise mode needs "
                        f"bottoms of the top's count {blob.count}; got a bottom of "
                        f"shape {b.shape}"
                    )
            for j in range(blob.count):
                self._check_single(layer, bottom, top, indices, i, j, element_wise=True)

    # -- Caffe's CheckGradientSingle --------------------------------------------------
    def _check_single(
        self,
        layer: Layer,
        bottom: Sequence[Blob],
        top: Sequence[Blob],
        check_bottom: list[int],
        top_id: int | None,
        top_data_id: int | None,
        element_wise: bool,
    ) -> None:
        while len(layer.param_propagate_down) < len(layer.blobs):
            layer.param_propagate_down.append(True)
        targets = [(f"bottom[{i}]", bottom[i]) for i in check_bottom]
        targets += [(f"param[{j}]", b) for j, b in enumerate(layer.blobs)]
        # Analytic gradients. NOTE: parameter diffs are zeroed before the forward,
        # as Caffe's checker does: a top may share its diff with a parameter
        # (the Parameter layer), and the objective's gradient lands there.
        for blob in layer.blobs:
            blob.mutable_cpu_diff()[...] = 0
        self._objective(layer, bottom, top, top_id, top_data_id)
        for blob in bottom:
            blob.mutable_cpu_diff()[...] = 0
        layer.Backward(top, [i in check_bottom for i in range(len(bottom))], bottom)
        analytic = [np.array(b.cpu_diff(), dtype=np.float64) for _, b in targets]
        for (label, blob), grad in zip(targets, analytic):
            gflat = grad.reshape(-1)
            if element_wise:
                assert top_data_id is not None
                self._check_off_diagonal(layer, label, blob, gflat, top_data_id)
                ks: Sequence[int] = [top_data_id]
            else:
                ks = range(blob.count)
            for k in ks:
                self._check_element(
                    layer, bottom, top, top_id, top_data_id, label, blob, k, gflat[k]
                )

    def _check_element(
        self,
        layer: Layer,
        bottom: Sequence[Blob],
        top: Sequence[Blob],
        top_id: int | None,
        top_data_id: int | None,
        label: str,
        blob: Blob,
        k: int,
        analytic: float,
    ) -> None:
        computed = float(analytic)
        feature = float(blob.cpu_data().reshape(-1)[k])
        if self._in_kink(feature):
            return
        blob.mutable_cpu_data().reshape(-1)[k] = feature + self.stepsize
        plus = self._objective(layer, bottom, top, top_id, top_data_id)
        blob.mutable_cpu_data().reshape(-1)[k] = feature - self.stepsize
        minus = self._objective(layer, bottom, top, top_id, top_data_id)
        blob.mutable_cpu_data().reshape(-1)[k] = feature
        numeric = (plus - minus) / (2.0 * self.stepsize)
        scale = max(abs(computed), abs(numeric), 1.0)
        if abs(computed - numeric) > self.threshold * scale:
            where = (
                "" if top_id is None else f" (objective top[{top_id}][{top_data_id}])"
            )
            raise GradientCheckError(
                f"{layer.type} layer '{layer.name}': {label} element {k} "
                f"(value {feature:.6g}){where}: analytic {computed:.8g} vs numeric "
                f"{numeric:.8g}"
            )

    def _check_off_diagonal(
        self, layer: Layer, label: str, blob: Blob, gflat: np.ndarray, diagonal: int
    ) -> None:
        # NOTE: an element-wise layer's d top[j] / d bottom[k] is 0 for k != j by
        # definition, so the numeric gradient there is 0 without any forward.
        values = np.asarray(blob.cpu_data(), dtype=np.float64).reshape(-1)
        bad = np.abs(gflat) > self.threshold * np.maximum(np.abs(gflat), 1.0)
        bad[diagonal] = False
        if self.kink_range > 0:
            bad &= ~(np.abs(values - self.kink) < self.kink_range)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise GradientCheckError(
                f"{layer.type} layer '{layer.name}': {label} element {k} "
                f"(value {values[k]:.6g}) (objective top[..][{diagonal}]): analytic "
                f"{gflat[k]:.8g} vs numeric 0 (element-wise layer)"
            )

    # -- helpers --------------------------------------------------------------------
    def _in_kink(self, feature: float) -> bool:
        return self.kink_range > 0 and abs(feature - self.kink) < self.kink_range

    def _objective(
        self,
        layer: Layer,
        bottom: Sequence[Blob],
        top: Sequence[Blob],
        top_id: int | None,
        top_data_id: int | None,
    ) -> float:
        """Forward, then the objective's value; its gradient goes into the top diffs.

        ``0.5 * sum over tops of ||top||²`` (diff = data), or the single element
        ``top[top_id].flat[top_data_id]`` (diff = one-hot) when ``top_id`` is given.
        """
        _rng.set_random_seed(self.seed)
        layer.Forward(bottom, top)
        if top_id is None:
            loss = 0.0
            for t in top:
                data = t.cpu_data()
                loss += 0.5 * float(np.sum(data.astype(np.float64) ** 2))
                t.mutable_cpu_diff()[...] = data
            return loss
        assert top_data_id is not None
        for t in top:
            t.mutable_cpu_diff()[...] = 0
        top[top_id].mutable_cpu_diff().reshape(-1)[top_data_id] = 1.0
        return float(top[top_id].cpu_data().reshape(-1)[top_data_id])

    @staticmethod
    def _check_dtypes(
        layer: Layer, bottom: Sequence[Blob], top: Sequence[Blob]
    ) -> None:
        for blob in list(bottom) + list(top):
            if blob.dtype != layer.dtype:
                raise GradientCheckError(
                    f"{layer.type} layer '{layer.name}' computes in {layer.dtype} but "
                    f"a bottom/top blob is {blob.dtype}: give every blob the layer's dtype"
                )


def _bottom_indices(check_bottom: int | Sequence[int] | None, n: int) -> list[int]:
    if check_bottom is None:
        return list(range(n))
    if isinstance(check_bottom, int):
        return [check_bottom]
    return list(check_bottom)
