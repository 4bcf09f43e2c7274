#!/usr/bin/env python3
"""Generate the ResNet-50 prototxt files of the caffepy model zoo.

Writes ``models/resnet50/deploy.prototxt`` and ``models/resnet50/train_val.prototxt``
(relative to the repository root) in the current ``layer { ... }`` text format.

The architecture is the ResNet-50 of He et al., "Deep Residual Learning for
Image Recognition" (2015), laid out like the authors' released Caffe model so
that its weights load by layer name:

* ``conv1`` 7x7/2 (64, with bias) -> ``bn_conv1`` -> ``scale_conv1`` -> ReLU,
  then ``pool1`` 3x3/2 max pooling;
* bottleneck blocks res2a-c, res3a-d, res4a-f, res5a-c, each made of
  ``branch2a`` (1x1) -> ``branch2b`` (3x3) -> ``branch2c`` (1x1, 4x wider), every
  convolution bias-free and followed by BatchNorm + Scale (bias_term: true);
  the first block of each stage has a projection shortcut ``branch1`` (1x1),
  and stages 3-5 downsample with stride 2 in ``branch2a`` and ``branch1``;
* the shortcut and residual branch are added (Eltwise SUM) and passed through
  an in-place ReLU;
* ``pool5`` 7x7 average pooling, ``fc1000`` and (deploy only) Softmax ``prob``.

In the deploy net BatchNorm uses the stored statistics
(``use_global_stats: true``); in the train/val net the flag is left unset so it
follows the phase (batch statistics in TRAIN, stored ones in TEST).

Usage (from anywhere)::

    python tools/gen_resnet.py            # rewrite models/resnet50/*.prototxt
    python tools/gen_resnet.py --out-dir /tmp/r50
"""

import argparse
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (stage number, blocks, bottleneck width, first-block stride)
STAGES = [(2, 3, 64, 1), (3, 4, 128, 2), (4, 6, 256, 2), (5, 3, 512, 2)]
MEAN_BGR = (104, 117, 123)


class Enum(str):
    """A protobuf enum value: written without quotes."""


def _scalar(value):
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def to_text(fields, indent=0):
    """Render a list of (key, value) pairs; a list value is a nested message."""
    pad = "  " * indent
    out = []
    for key, value in fields:
        if isinstance(value, list):
            out.append(f"{pad}{key} {{\n{to_text(value, indent + 1)}{pad}}}\n")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(out)


class NetBuilder:
    """Collects layers for either the deploy or the train/val variant."""

    def __init__(self, train):
        self.train = train
        self.layers = []

    def add(self, name, type_, bottoms, tops, *extra):
        fields = [("name", name), ("type", type_)]
        fields += [("bottom", b) for b in bottoms]
        fields += [("top", t) for t in tops]
        for item in extra:
            fields += item
        self.layers.append(("layer", fields))

    # -- layer helpers ------------------------------------------------------
    def conv(self, name, bottom, num_output, kernel, stride=1, pad=0, bias=False):
        cp = [("num_output", num_output)]
        if not bias:
            cp.append(("bias_term", False))
        if pad:
            cp.append(("pad", pad))
        cp.append(("kernel_size", kernel))
        if stride != 1:
            cp.append(("stride", stride))
        params = []
        if self.train:
            cp.append(("weight_filler", [("type", "msra")]))
            params.append(("param", [("lr_mult", 1), ("decay_mult", 1)]))
            if bias:
                cp.append(("bias_filler", [("type", "constant"), ("value", 0)]))
                params.append(("param", [("lr_mult", 2), ("decay_mult", 0)]))
        self.add(
            name, "Convolution", [bottom], [name], params, [("convolution_param", cp)]
        )

    def bn_scale(self, blob, suffix):
        """In-place BatchNorm + Scale on ``blob`` named bn<suffix> / scale<suffix>."""
        if self.train:
            # The three BatchNorm blobs (mean, variance, count) are statistics,
            # not learned parameters: never let the solver touch them.
            frozen = [("param", [("lr_mult", 0), ("decay_mult", 0)])] * 3
            self.add("bn" + suffix, "BatchNorm", [blob], [blob], frozen)
        else:
            self.add(
                "bn" + suffix,
                "BatchNorm",
                [blob],
                [blob],
                [("batch_norm_param", [("use_global_stats", True)])],
            )
        self.add(
            "scale" + suffix,
            "Scale",
            [blob],
            [blob],
            [("scale_param", [("bias_term", True)])],
        )

    def relu(self, name, blob):
        self.add(name, "ReLU", [blob], [blob])

    # -- network ------------------------------------------------------------
    def bottleneck(self, bottom, stage, block, width, stride, project):
        tag = f"{stage}{block}"
        res = "res" + tag
        if project:
            self.conv(res + "_branch1", bottom, 4 * width, 1, stride=stride)
            self.bn_scale(res + "_branch1", tag + "_branch1")
            shortcut = res + "_branch1"
        else:
            shortcut = bottom
        specs = [
            ("2a", width, 1, stride, 0),
            ("2b", width, 3, 1, 1),
            ("2c", 4 * width, 1, 1, 0),
        ]
        prev = bottom
        for branch, num_output, kernel, s, pad in specs:
            name = f"{res}_branch{branch}"
            self.conv(name, prev, num_output, kernel, stride=s, pad=pad)
            self.bn_scale(name, f"{tag}_branch{branch}")
            if branch != "2c":
                self.relu(name + "_relu", name)
            prev = name
        self.add(
            res,
            "Eltwise",
            [shortcut, prev],
            [res],
            [("eltwise_param", [("operation", Enum("SUM"))])],
        )
        self.relu(res + "_relu", res)
        return res

    def body(self):
        self.conv("conv1", "data", 64, 7, stride=2, pad=3, bias=True)
        self.bn_scale("conv1", "_conv1")
        self.relu("conv1_relu", "conv1")
        self.add(
            "pool1",
            "Pooling",
            ["conv1"],
            ["pool1"],
            [
                (
                    "pooling_param",
                    [("pool", Enum("MAX")), ("kernel_size", 3), ("stride", 2)],
                )
            ],
        )
        blob = "pool1"
        for stage, blocks, width, stride in STAGES:
            for i in range(blocks):
                blob = self.bottleneck(
                    blob,
                    stage,
                    "abcdefgh"[i],
                    width,
                    stride if i == 0 else 1,
                    project=(i == 0),
                )
        self.add(
            "pool5",
            "Pooling",
            [blob],
            ["pool5"],
            [
                (
                    "pooling_param",
                    [("pool", Enum("AVE")), ("kernel_size", 7), ("stride", 1)],
                )
            ],
        )
        ipp = [("num_output", 1000)]
        params = []
        if self.train:
            ipp += [
                ("weight_filler", [("type", "gaussian"), ("std", 0.01)]),
                ("bias_filler", [("type", "constant"), ("value", 0)]),
            ]
            params = [
                ("param", [("lr_mult", 1), ("decay_mult", 1)]),
                ("param", [("lr_mult", 2), ("decay_mult", 0)]),
            ]
        self.add(
            "fc1000",
            "InnerProduct",
            ["pool5"],
            ["fc1000"],
            params,
            [("inner_product_param", ipp)],
        )


def _header(lines):
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def deploy_text():
    net = NetBuilder(train=False)
    net.add(
        "data",
        "Input",
        [],
        ["data"],
        [("input_param", [("shape", [("dim", d) for d in (10, 3, 224, 224)])])],
    )
    net.body()
    net.add("prob", "Softmax", ["fc1000"], ["prob"])
    header = _header(
        [
            "caffepy model zoo -- ResNet-50 deployment net.",
            "Generated by tools/gen_resnet.py; edit the script, not this file.",
            f"Input: ten 3x224x224 BGR crops minus the channel mean {MEAN_BGR}.",
            "BatchNorm uses the stored statistics (use_global_stats: true).",
            'Output "prob": softmax over the 1000 ILSVRC-2012 classes.',
        ]
    )
    return header + to_text([("name", "ResNet-50")] + net.layers), net


def train_val_text():
    net = NetBuilder(train=True)
    mean = [("mean_value", m) for m in MEAN_BGR]
    for phase, source, batch, mirror in (
        ("TRAIN", "data/ilsvrc12_train_lmdb", 32, True),
        ("TEST", "data/ilsvrc12_val_lmdb", 50, False),
    ):
        net.add(
            "data",
            "Data",
            [],
            ["data", "label"],
            [("include", [("phase", Enum(phase))])],
            [("transform_param", [("mirror", mirror), ("crop_size", 224)] + mean)],
            [
                (
                    "data_param",
                    [
                        ("source", source),
                        ("batch_size", batch),
                        ("backend", Enum("LMDB")),
                    ],
                )
            ],
        )
    net.body()
    test_only = [("include", [("phase", Enum("TEST"))])]
    net.add("accuracy", "Accuracy", ["fc1000", "label"], ["accuracy"], test_only)
    net.add(
        "accuracy_top5",
        "Accuracy",
        ["fc1000", "label"],
        ["accuracy_top5"],
        test_only,
        [("accuracy_param", [("top_k", 5)])],
    )
    net.add("loss", "SoftmaxWithLoss", ["fc1000", "label"], ["loss"])
    header = _header(
        [
            "caffepy model zoo -- ResNet-50 train/val net.",
            "Generated by tools/gen_resnet.py; edit the script, not this file.",
            "Random 224x224 crops + mirroring for training, centre crop for validation,",
            f"channel mean {MEAN_BGR} subtracted. BatchNorm has no use_global_stats, so it",
            "uses batch statistics in TRAIN and the running averages in TEST.",
        ]
    )
    return header + to_text([("name", "ResNet-50")] + net.layers), net


def count_types(net):
    counts = {}
    for _, fields in net.layers:
        type_ = dict(fields)["type"]
        counts[type_] = counts.get(type_, 0) + 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out-dir", default=os.path.join(REPO_ROOT, "models", "resnet50")
    )
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for filename, builder in (
        ("deploy.prototxt", deploy_text),
        ("train_val.prototxt", train_val_text),
    ):
        text, net = builder()
        path = os.path.join(args.out_dir, filename)
        with open(path, "w") as f:
            f.write(text)
        counts = count_types(net)
        print(
            f"{path}: {len(net.layers)} layers, "
            f"{counts.get('Convolution', 0)} Convolution, "
            f"{counts.get('InnerProduct', 0)} InnerProduct, "
            f"{counts.get('BatchNorm', 0)} BatchNorm, {counts.get('Eltwise', 0)} Eltwise"
        )


if __name__ == "__main__":
    main()
