"""A tiny NetParameter -> PyTorch translator, so the benchmarks run the same nets.

It covers every layer type of the benchmarked models' train and deploy nets
(LeNet, CIFAR10-quick, CIFAR10-full, CaffeNet, GoogLeNet, VGG-16, ResNet-50):
Input, Convolution, Pooling, InnerProduct, ReLU, LRN (across and within
channels), Dropout, Softmax, Concat, BatchNorm (batch statistics in training
unless ``use_global_stats`` says otherwise), Scale, Eltwise, SoftmaxWithLoss
(with ``loss_weight``: GoogLeNet's three heads) and Accuracy (``top_k``).
Shapes, Caffe's ceil-mode pooling, fillers and the ``lr_mult`` / ``decay_mult``
of every parameter follow the prototxt, so the PyTorch net does the same
arithmetic as caffepy's (``bench/check_torch_net.py`` checks it with copied
weights). The net must already be filtered to one phase (``bench/common.py``
prepares such files); anything else raises ValueError rather than computing
something different.
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
    dict of all blobs; ``loss(blobs)`` is the net's weighted loss (Caffe's
    ``loss_weight``, 1 for a loss layer's first top by default). Parameters
    carry ``lr_mult`` and ``decay_mult``; ``layer_params[name]`` and
    ``layer_buffers[name]`` (BatchNorm's mean and variance) list them per
    Caffe layer (the latter as buffer names), in the order of caffepy's
    ``net.params[name]``.
    """

    def __init__(self, param, input_shapes):
        super().__init__()
        self.steps = []
        self.input_names = []
        self.loss_weights = {}
        self.layer_params = {}
        self.layer_buffers = {}
        # NOTE: shapes are inferred with a batch of one, in eval mode (a zero
        # batch in training mode would move BatchNorm's running statistics).
        blobs = {
            name: torch.zeros((1,) + tuple(shape[1:]))
            for name, shape in input_shapes.items()
        }
        self.training = False
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
                default = 1.0 if lp.type.endswith("Loss") else 0.0
                for j, name in enumerate(lp.top):
                    w = lp.loss_weight[j] if j < len(lp.loss_weight) else default
                    if w and (j == 0 or j < len(lp.loss_weight)):
                        self.loss_weights[name] = w
        self.train(True)

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
        self.layer_params[lp.name] = made
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
            if p.pool != 1:
                raise ValueError(f"{lp.name}: STOCHASTIC pooling is not translated")
            # NOTE: Caffe divides by the window clipped to the padded image, as
            # count_include_pad=True does (also in ceil mode).
            return lambda x: F.avg_pool2d(
                x, k, s, pad, ceil_mode=ceil, count_include_pad=True
            )
        if t == "InnerProduct":
            p = lp.inner_product_param
            if p.transpose:
                raise ValueError(f"{lp.name}: transposed InnerProduct not translated")
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
            n, alpha, beta, k = p.local_size, p.alpha, p.beta, p.k
            if p.norm_region == 0:  # ACROSS_CHANNELS: k + alpha/n * sum x^2
                return lambda x: F.local_response_norm(x, n, alpha, beta, k)
            # WITHIN_CHANNEL: x * (1 + alpha/n^2 * sum of x^2 over the n x n
            # window)^-beta, k ignored (Caffe's square/AVE-pool/power graph)
            pad = (n - 1) // 2

            def within(x):
                mean = F.avg_pool2d(x * x, n, 1, pad, ceil_mode=True)
                return x * (1.0 + alpha * mean).pow(-beta)

            return within
        if t == "Dropout":
            ratio = lp.dropout_param.dropout_ratio
            # Caffe's dropout scales by 1 / (1 - ratio) in training, as PyTorch
            return lambda x: F.dropout(x, ratio, self.training)
        if t == "Softmax":
            axis = lp.softmax_param.axis
            return lambda x: F.softmax(x, axis)
        if t == "Concat":
            axis = lp.concat_param.axis
            return lambda *xs: torch.cat(xs, axis)
        if t == "BatchNorm":
            p = lp.batch_norm_param
            c = x.shape[1]
            mean = torch.zeros(c)
            var = torch.ones(c)
            eps = p.eps
            # Caffe's stored sums decay by moving_average_fraction (0.999): PyTorch's
            # momentum 1 - 0.999 updates its running statistics at the same rate.
            momentum = 1.0 - p.moving_average_fraction
            fixed = p.use_global_stats if p.HasField("use_global_stats") else None
            keys = [f"{lp.name}_{k}".replace("/", "_") for k in ("mean", "var")]
            self.register_buffer(keys[0], mean)
            self.register_buffer(keys[1], var)
            self.layer_buffers[lp.name] = keys

            def batch_norm(x):
                # NOTE: the buffers are looked up on each call: Module.to()
                # replaces buffer tensors (parameters keep their objects)
                mean, var = self._buffers[keys[0]], self._buffers[keys[1]]
                batch_stats = self.training if fixed is None else not fixed
                return F.batch_norm(
                    x, mean, var, None, None, batch_stats, momentum, eps
                )

            return batch_norm
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
            lpar = lp.loss_param
            ignore = lpar.ignore_label if lpar.HasField("ignore_label") else -100
            norm = lpar.normalization  # FULL 0, VALID 1 (default), BATCH_SIZE 2, NONE 3
            if not lpar.HasField("normalization") and lpar.HasField("normalize"):
                norm = 1 if lpar.normalize else 2
            if lp.softmax_param.axis != 1 or len(lp.top) > 1:
                raise ValueError(f"{lp.name}: only axis 1 and one top are translated")
            if norm in (0, 1):
                return lambda x, label: F.cross_entropy(
                    x, label.long(), ignore_index=ignore
                )

            def summed(x, label):
                loss = F.cross_entropy(
                    x, label.long(), ignore_index=ignore, reduction="sum"
                )
                return loss / x.shape[0] if norm == 2 else loss

            return summed
        if t == "Accuracy":
            ap = lp.accuracy_param
            top_k = ap.top_k
            if ap.HasField("ignore_label") or ap.axis != 1 or len(lp.top) > 1:
                raise ValueError(
                    f"{lp.name}: ignore_label/axis/per-class not translated"
                )

            def accuracy(x, label):
                best = x.topk(top_k, 1).indices
                return (best == label.long()[:, None]).any(1).float().mean()

            return accuracy
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

    def loss(self, blobs):
        """The weighted sum of the loss tops (what Caffe's backward starts from)."""
        return sum(w * blobs[name].sum() for name, w in self.loss_weights.items())

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
