"""A tiny NetParameter -> PyTorch translator, so the benchmarks run the same nets.

It covers the layer types of the benchmarked models (LeNet, CIFAR10-quick,
CaffeNet, GoogLeNet, ResNet-50): Input, Convolution, Pooling, InnerProduct,
ReLU, LRN, Dropout, Softmax, Concat, BatchNorm, Scale, Eltwise,
SoftmaxWithLoss, Accuracy. Shapes, Caffe's ceil-mode pooling, fillers and the
``lr_mult`` / ``decay_mult`` of every parameter follow the prototxt, so the
PyTorch net does the same arithmetic as caffepy's. The net must already be
filtered to one phase (``bench/common.py`` prepares such files).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _fill(tensor, filler):
    """Initialise ``tensor`` in place with Caffe's filler semantics."""
    kind = filler.type or "constant"
    shape = tensor.shape
    fan_in = tensor.numel() // shape[0] if tensor.dim() > 1 else tensor.numel()
    fan_out = tensor.numel() // shape[1] if tensor.dim() > 1 else tensor.numel()
    norm = filler.variance_norm  # FAN_IN = 0, FAN_OUT = 1, AVERAGE = 2
    n = {0: fan_in, 1: fan_out}.get(norm, (fan_in + fan_out) / 2)
    with torch.no_grad():
        if kind == "constant":
            tensor.fill_(filler.value)
        elif kind == "gaussian":
            tensor.normal_(filler.mean, filler.std)
        elif kind == "uniform":
            tensor.uniform_(filler.min, filler.max)
        elif kind == "xavier":
            a = math.sqrt(3.0 / n)
            tensor.uniform_(-a, a)
        elif kind == "msra":
            tensor.normal_(0.0, math.sqrt(2.0 / n))
        else:
            raise ValueError(f"filler {kind!r} is not translated")


def _pair(repeated, h, w, has, default):
    if has:
        return (h, w)
    values = list(repeated)
    if not values:
        return (default, default)
    return (values[0], values[-1])


class TorchNet(nn.Module):
    """The layers of a (phase-filtered) NetParameter as a PyTorch module.

    ``forward(**inputs)`` takes the Input/Data tops by name and returns the
    dict of all blobs. Parameters carry ``lr_mult`` and ``decay_mult``.
    """

    def __init__(self, param, input_shapes):
        super().__init__()
        self.steps = []
        self.input_names = []
        self.outputs = {}
        blobs = {name: torch.zeros(shape) for name, shape in input_shapes.items()}
        with torch.no_grad():
            for lp in param.layer:
                if lp.type in ("Input", "Data"):
                    self.input_names.extend(lp.top)
                    continue
                fn = self._build(lp, [blobs[b] for b in lp.bottom])
                self.steps.append((fn, list(lp.bottom), list(lp.top)))
                out = fn(*[blobs[b] for b in lp.bottom])
                for name, value in zip(
                    lp.top, out if isinstance(out, tuple) else (out,)
                ):
                    blobs[name] = value

    def _params(self, lp, shapes, fillers):
        made = []
        for j, (shape, filler) in enumerate(zip(shapes, fillers)):
            p = nn.Parameter(torch.empty(shape))
            _fill(p, filler)
            spec = lp.param[j] if j < len(lp.param) else None
            p.lr_mult = spec.lr_mult if spec is not None else 1.0
            p.decay_mult = spec.decay_mult if spec is not None else 1.0
            self.register_parameter(f"{lp.name}_{j}".replace("/", "_"), p)
            made.append(p)
        return made

    def _build(self, lp, bottoms):  # noqa: C901 - one branch per layer type
        t = lp.type
        x = bottoms[0] if bottoms else None
        if t == "Convolution":
            p = lp.convolution_param
            k = _pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 1)
            s = _pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
            pad = _pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
            d = _pair(p.dilation, 0, 0, False, 1)
            g = p.group
            shapes = [(p.num_output, x.shape[1] // g) + k]
            fillers = [p.weight_filler]
            if p.bias_term:
                shapes.append((p.num_output,))
                fillers.append(p.bias_filler)
            ps = self._params(lp, shapes, fillers)
            b = ps[1] if p.bias_term else None
            return lambda x: F.conv2d(x, ps[0], b, s, pad, d, g)
        if t == "Pooling":
            p = lp.pooling_param
            k = _pair(
                [p.kernel_size] if p.HasField("kernel_size") else [],
                p.kernel_h,
                p.kernel_w,
                p.HasField("kernel_h"),
                1,
            )
            s = _pair([p.stride], p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
            pad = _pair([p.pad], p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
            if p.global_pooling:
                k = tuple(x.shape[2:])
            ceil = p.round_mode == 0  # CEIL
            if p.pool == 0:  # MAX
                return lambda x: F.max_pool2d(x, k, s, pad, ceil_mode=ceil)
            return lambda x: F.avg_pool2d(
                x, k, s, pad, ceil_mode=ceil, count_include_pad=True
            )
        if t == "InnerProduct":
            p = lp.inner_product_param
            axis = p.axis % x.dim()
            K = math.prod(x.shape[axis:])
            shapes, fillers = [(p.num_output, K)], [p.weight_filler]
            if p.bias_term:
                shapes.append((p.num_output,))
                fillers.append(p.bias_filler)
            ps = self._params(lp, shapes, fillers)
            b = ps[1] if p.bias_term else None
            return lambda x: F.linear(x.flatten(axis), ps[0], b)
        if t == "ReLU":
            slope = lp.relu_param.negative_slope
            inplace = lp.top[0] == lp.bottom[0]
            if slope:
                return lambda x: F.leaky_relu(x, slope, inplace=inplace)
            return lambda x: F.relu(x, inplace=inplace)
        if t == "LRN":
            p = lp.lrn_param
            return lambda x: F.local_response_norm(
                x, p.local_size, p.alpha, p.beta, p.k
            )
        if t == "Dropout":
            ratio = lp.dropout_param.dropout_ratio
            return lambda x: F.dropout(x, ratio, self.training)
        if t == "Softmax":
            axis = lp.softmax_param.axis
            return lambda x: F.softmax(x, axis)
        if t == "Concat":
            axis = lp.concat_param.axis
            return lambda *xs: torch.cat(xs, axis)
        if t == "BatchNorm":
            c = x.shape[1]
            mean = torch.zeros(c)
            var = torch.ones(c)
            eps = lp.batch_norm_param.eps
            self.register_buffer(f"{lp.name}_mean".replace("/", "_"), mean)
            self.register_buffer(f"{lp.name}_var".replace("/", "_"), var)
            return lambda x: F.batch_norm(
                x, mean, var, None, None, self.training, 0.001, eps
            )
        if t == "Scale":
            p = lp.scale_param
            c = x.shape[1]
            if not p.HasField("filler"):  # Caffe's default: constant 1
                p.filler.type, p.filler.value = "constant", 1.0
            shapes, fillers = [(c,)], [p.filler]
            if p.bias_term:
                shapes.append((c,))
                fillers.append(p.bias_filler)
            ps = self._params(lp, shapes, fillers)
            view = (1, c) + (1,) * (x.dim() - 2)
            if p.bias_term:
                return lambda x: torch.addcmul(ps[1].view(view), x, ps[0].view(view))
            return lambda x: x * ps[0].view(view)
        if t == "Eltwise":
            p = lp.eltwise_param
            coeff = list(p.coeff)
            if p.operation == 1:  # SUM
                if coeff and any(c != 1 for c in coeff):
                    return lambda *xs: sum(c * v for c, v in zip(coeff, xs))
                return lambda a, *rest: sum(rest, a)
            if p.operation == 0:  # PROD
                return lambda a, *rest: math.prod(rest, start=a)
            return lambda a, *rest: torch.stack((a,) + rest).amax(0)
        if t == "SoftmaxWithLoss":
            return lambda x, label: F.cross_entropy(x, label.long())
        if t == "Accuracy":
            return lambda x, label: (x.argmax(1) == label.long()).float().mean()
        raise ValueError(f"layer type {t!r} is not translated")

    def forward(self, **inputs):
        blobs = dict(inputs)
        for fn, bottoms, tops in self.steps:
            out = fn(*[blobs[b] for b in bottoms])
            if isinstance(out, tuple):
                blobs.update(zip(tops, out))
            else:
                blobs[tops[0]] = out
        return blobs

    def param_groups(self, base_lr, weight_decay):
        """SGD parameter groups with Caffe's per-parameter lr and decay multipliers."""
        groups = {}
        for p in self.parameters():
            key = (p.lr_mult, p.decay_mult)
            groups.setdefault(key, []).append(p)
        return [
            {
                "params": ps,
                "lr": base_lr * lr,
                "lr_mult": lr,
                "weight_decay": weight_decay * decay,
            }
            for (lr, decay), ps in groups.items()
            if lr
        ]
