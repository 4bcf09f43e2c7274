"""Fuzzing the readers of untrusted files: anything but a caffepy error fails.

Hypothesis mutates valid inputs and feeds them to caffepy the way the CLI would:

- net prototxts (text): parse and upgrade; the small ones are also built and run
  forward and backward (Input layers only, so no data is needed);
- solver prototxts (text): parse, upgrade and validate;
- ``.caffemodel`` bytes: read (and upgrade) and copy into a net;
- ``.solverstate`` bytes and their JSON sidecar: restore into a solver;
- ``Datum`` bytes (raw, float and encoded PNG/JPEG records): decode and transform.

Every example must either work or raise a :class:`caffepy.errors.CaffepyError`;
any other exception (or a crash) is a bug. CI runs a bounded number of examples
per target (``CAFFEPY_FUZZ_EXAMPLES``, default 200, derandomized so CI is stable);
``make fuzz`` runs 5000 per target with fresh randomness.

Mutated numbers come from a bounded set (up to 100, plus absurd values that
must be refused), so a mutation cannot ask for gigabytes that would be legal.
"""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caffepy.errors import CaffepyError

# (hypothesis's failure report trips a DeprecationWarning in one of its plugins)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("CAFFEPY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="CAFFEPY_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def survives(fn, *args):
    """Run ``fn``; a CaffepyError is an acceptable outcome, anything else fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow etc. on absurd numbers
        try:
            fn(*args)
        except CaffepyError:
            pass


# -- text mutations ---------------------------------------------------------------------------
NUMBERS = [
    "0",
    "1",
    "2",
    "3",
    "7",
    "100",
    "-1",
    "-7",
    "0.5",
    "1e-30",
    "1e30",
    "-1e30",
    "nan",
    "inf",
    "2147483648",
    "9223372036854775807",
    "99999999999999999999",
]


def _vocabulary():
    from caffepy.proto import caffe_pb2
    from caffepy.registry import layer_type_list

    words = [
        "{",
        "}",
        ":",
        '"',
        "'",
        " ",
        "\n",
        "#",
        "<",
        "[",
        "]",
        ",",
        ";",
        "layer {",
        "layers {",
        "}\n",
        "include { phase: TEST }",
        "param {",
        "lr_mult: 0",
        "bottom: ",
        "top: ",
        "name: ",
        "type: ",
        "TRAIN",
        "TEST",
        "MAX",
        "AVE",
        "SUM",
        "PROD",
        "true",
        "false",
        'input: "x"',
        "input_dim: 1",
        "in_place",
        "\\",
        "\xff",
        "é",
    ]
    for msg in (
        caffe_pb2.LayerParameter,
        caffe_pb2.SolverParameter,
        caffe_pb2.ConvolutionParameter,
        caffe_pb2.InputParameter,
        caffe_pb2.V1LayerParameter,
    ):
        words += [f.name + ": " for f in msg.DESCRIPTOR.fields]
    words += [f'"{t}"' for t in layer_type_list()]
    return words


VOCAB = _vocabulary()

# A mutation: (kind, where in the text as a fraction, a parameter).
MUTATION = st.tuples(
    # (numbers and strings thrice: they keep the syntax, so reach deeper code)
    st.sampled_from(
        ["number"] * 3
        + ["string"] * 3
        + ["delete", "insert", "dup_line", "del_line", "swap_lines"]
    ),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 10**6),
)
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=4)


def mutate_text(text, mutations):
    import re

    for kind, where, k in mutations:
        pos = int(where * (len(text) + 1))
        if kind == "delete":
            text = text[:pos] + text[pos + 1 + k % 20 :]
        elif kind == "insert":
            text = text[:pos] + VOCAB[k % len(VOCAB)] + text[pos:]
        elif kind in ("number", "string"):
            rx = r"-?\d+(\.\d+)?(e-?\d+)?" if kind == "number" else r'"[^"\n]*"'
            found = list(re.finditer(rx, text))
            if found:
                m = found[int(where * len(found))]
                new = (
                    NUMBERS[k % len(NUMBERS)]
                    if kind == "number"
                    else (
                        found[k % len(found)].group(0)
                        if k % 3
                        else VOCAB[k % len(VOCAB)]
                    )
                )
                text = text[: m.start()] + new + text[m.end() :]
        else:
            lines = text.split("\n")
            i = int(where * len(lines))
            j = k % len(lines)
            if kind == "dup_line":
                lines.insert(j, lines[i])
            elif kind == "del_line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


# -- the inputs ----------------------------------------------------------------------------------------
ZOO = """name: "zoo"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 10 dim: 10 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
  scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: 0.1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "lrn" type: "LRN" bottom: "pool" top: "lrn" lrn_param { local_size: 3 } }
layer { name: "drop" type: "Dropout" bottom: "lrn" top: "lrn" dropout_param { dropout_ratio: 0.5 } }
layer { name: "flat" type: "Flatten" bottom: "lrn" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "lrn" top: "ip"
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "tanh" type: "TanH" bottom: "ip" top: "ip" }
layer { name: "cat" type: "Concat" bottom: "ip" bottom: "flat" top: "cat" concat_param { axis: 1 } }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2"
  slice_param { axis: 1 slice_point: 8 } }
layer { name: "power" type: "Power" bottom: "s1" top: "pw" power_param { power: 2 shift: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "pw" bottom: "ip" top: "sum"
  eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layer { name: "silence" type: "Silence" bottom: "s2" }
layer { name: "score" type: "InnerProduct" bottom: "sum" top: "score"
  inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc"
  include { phase: TEST } }
"""

V1_NET = """name: "v1"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 6 input_dim: 6
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip"
  inner_product_param { num_output: 3 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""

V0_NET = """name: "v0"
input: "data"
input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "pad" }
layers { layer { name: "conv" type: "conv" num_output: 2 kernelsize: 3
    blobs_lr: 1 blobs_lr: 2 } bottom: "pad" top: "conv" }
layers { layer { name: "relu" type: "relu" } bottom: "conv" top: "conv" }
layers { layer { name: "ip" type: "innerproduct" num_output: 2 } bottom: "conv" top: "ip" }
"""

BUILD_NETS = {
    "zoo": ZOO,
    "v1": V1_NET,
    "v0": V0_NET,
    "lenet_deploy": (ROOT / "models/lenet/deploy.prototxt").read_text(),
}
PARSE_NETS = {
    p.parent.name + "/" + p.name: p.read_text()
    for p in sorted((ROOT / "models").glob("*/*.prototxt"))
    if "solver" not in p.name
}
SOLVERS = {
    p.parent.name + "/" + p.name: p.read_text()
    for p in sorted((ROOT / "models").glob("*/*solver*.prototxt"))
}


def _build_and_run(text, phase):
    import caffepy
    from caffepy.io.prototxt import parse_net_text

    net = caffepy.Net(param=parse_net_text(text, "fuzz.prototxt"), phase=phase)
    net.forward()
    net.backward()


@FUZZ
@given(
    name=st.sampled_from(sorted(BUILD_NETS)),
    phase=st.sampled_from([0, 1]),
    mutations=MUTATIONS,
)
def test_fuzz_net_prototxt_build_and_run(name, phase, mutations):
    survives(_build_and_run, mutate_text(BUILD_NETS[name], mutations), phase)


@FUZZ
@given(name=st.sampled_from(sorted(PARSE_NETS)), mutations=MUTATIONS)
def test_fuzz_net_prototxt_parse(name, mutations):
    from caffepy.io.prototxt import parse_net_text

    survives(parse_net_text, mutate_text(PARSE_NETS[name], mutations), "fuzz.prototxt")


def _solver_param(text):
    from caffepy.io.prototxt import parse_text
    from caffepy.io.upgrade import upgrade_solver
    from caffepy.proto import caffe_pb2
    from caffepy.solvers import solver_class
    from caffepy.solvers.lr_policy import check_lr_policy, learning_rate

    param = parse_text(text, caffe_pb2.SolverParameter(), "fuzz_solver.prototxt")
    upgrade_solver(param, "fuzz_solver.prototxt")
    solver_class(param.type)
    check_lr_policy(param)
    step = 0
    for it in (0, 1, 1000):
        _, step = learning_rate(param, it, step)


@FUZZ
@given(name=st.sampled_from(sorted(SOLVERS)), mutations=MUTATIONS)
def test_fuzz_solver_prototxt(name, mutations):
    survives(_solver_param, mutate_text(SOLVERS[name], mutations))


# -- byte mutations --------------------------------------------------------------------------------------
BYTE_MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 2**16),
)
BYTE_MUTATIONS = st.lists(BYTE_MUTATION, min_size=1, max_size=6)
_SPECIAL = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x3A]


def mutate_bytes(data, mutations):
    data = bytearray(data)
    for kind, where, k in mutations:
        pos = int(where * (len(data) + 1))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << (k % 8)
        elif kind == "set" and pos < len(data):
            data[pos] = _SPECIAL[k % len(_SPECIAL)] if k % 2 else k % 256
        elif kind == "insert":
            data[pos:pos] = bytes([_SPECIAL[k % len(_SPECIAL)]] * (1 + k % 9))
        elif kind == "delete":
            del data[pos : pos + 1 + k % 64]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "dup":
            data[pos:pos] = data[pos : pos + 1 + k % 64]
    return bytes(data)


SMALL_NET = """name: "small"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
"""


@pytest.fixture(scope="module")
def small_net():
    import caffepy
    from caffepy.io.prototxt import parse_net_text

    return caffepy.Net(param=parse_net_text(SMALL_NET), phase=caffepy.TEST)


@pytest.fixture(scope="module")
def weight_files(small_net):
    """Serialized weights of the small net: current and legacy (V1, 4-D blobs)."""
    from caffepy.io.blobproto import proto_from_array
    from caffepy.proto import caffe_pb2

    current = small_net.to_proto().SerializeToString()
    legacy = caffe_pb2.NetParameter(name="small")
    for layer in small_net.layers:
        if layer.type in ("Convolution", "InnerProduct"):
            v1 = legacy.layers.add(name=layer.name)
            v1.type = {"Convolution": v1.CONVOLUTION, "InnerProduct": v1.INNER_PRODUCT}[
                layer.type
            ]
            for blob in layer.blobs:
                proto_from_array(blob.data, proto=v1.blobs.add(), legacy_4d=True)
    return {"current": current, "legacy": legacy.SerializeToString()}


def _read_and_copy(path, net):
    from caffepy.io.prototxt import read_weights

    net.copy_from(read_weights(path))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(kind=st.sampled_from(["current", "legacy"]), mutations=BYTE_MUTATIONS)
def test_fuzz_caffemodel(kind, mutations, small_net, weight_files, scratch):
    path = scratch / "fuzz.caffemodel"
    path.write_bytes(mutate_bytes(weight_files[kind], mutations))
    survives(_read_and_copy, str(path), small_net)


# -- solver states ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def solvers(tmp_path_factory):
    """An SGD and an Adam solver on the small net, each with one snapshot."""
    import caffepy
    from caffepy.io.prototxt import parse_net_text
    from caffepy.proto import caffe_pb2

    folder = tmp_path_factory.mktemp("solvers")
    net = parse_net_text(
        SMALL_NET.replace(
            'top: "ip"\n', 'top: "ip"\n  param { lr_mult: 1 } param { lr_mult: 2 }\n'
        )
        + 'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" '
        'top: "loss" propagate_down: true propagate_down: false }\n'
    )
    out = {}
    for rule in ("SGD", "Adam"):
        param = caffe_pb2.SolverParameter(
            type=rule,
            base_lr=0.01,
            lr_policy="step",
            stepsize=2,
            gamma=0.5,
            max_iter=2,
            snapshot_prefix=str(folder / rule),
        )
        if rule == "SGD":
            param.momentum = 0.9
        param.net_param.CopyFrom(net)
        solver = caffepy.get_solver(param)
        solver.step(2)
        _, state = solver.snapshot()
        with open(state, "rb") as f:
            state_bytes = f.read()
        with open(state + ".caffepy.json", encoding="utf-8") as f:
            sidecar = f.read()
        out[rule] = (solver, state_bytes, sidecar)
    return out


def _restore(solver, folder, state, sidecar):
    path = folder / "fuzz.solverstate"
    path.write_bytes(state)
    side = Path(str(path) + ".caffepy.json")
    if sidecar is None:
        side.unlink(missing_ok=True)
    else:
        side.write_text(sidecar, encoding="utf-8", errors="replace")
    solver.restore(str(path))


JSON_VALUES = [
    None,
    0,
    -1,
    1.5,
    2**70,
    "",
    "x",
    [],
    [1, 2],
    {},
    {"position": 1},
    {"state": {}},
    True,
]


def _mutate_json(text, mutations):
    """Replace values in the sidecar's JSON with other JSON values (structure
    kept), or mangle its text."""
    payload = json.loads(text)
    for kind, where, k in mutations:
        if kind in ("flip", "set", "insert"):
            paths, stack = [], [((), payload)]
            while stack:
                here, node = stack.pop()
                items = (
                    node.items()
                    if isinstance(node, dict)
                    else enumerate(node)
                    if isinstance(node, list)
                    else ()
                )
                for key, value in items:
                    paths.append(here + (key,))
                    stack.append((here + (key,), value))
            if paths:
                target = paths[int(where * len(paths))]
                node = payload
                for key in target[:-1]:
                    node = node[key]
                node[target[-1]] = json.loads(
                    json.dumps(JSON_VALUES[k % len(JSON_VALUES)])
                )
        else:
            return mutate_bytes(
                json.dumps(payload).encode(), [(kind, where, k)]
            ).decode("utf-8", "replace")
    return json.dumps(payload)


@FUZZ
@given(
    rule=st.sampled_from(["SGD", "Adam"]),
    target=st.sampled_from(["state", "sidecar"]),
    mutations=BYTE_MUTATIONS,
)
def test_fuzz_solverstate(rule, target, mutations, solvers, scratch):
    solver, state, sidecar = solvers[rule]
    folder = scratch
    if target == "state":
        state = mutate_bytes(state, mutations)
    else:
        sidecar = _mutate_json(sidecar, mutations)
    survives(_restore, solver, folder, state, sidecar)


# -- Datum ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def datums():
    import cv2

    from caffepy.data.datum import array_to_datum, encoded_datum

    rng = np.random.default_rng(1701)
    image = (rng.random((3, 8, 8)) * 255).astype(np.uint8)
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    out = {
        "raw": array_to_datum(image, 3),
        "float": array_to_datum(image[:1].astype(np.float32) / 255, 1),
        "png": encoded_datum(cv2.imencode(".png", hwc)[1].tobytes(), 2),
        "jpg": encoded_datum(cv2.imencode(".jpg", hwc)[1].tobytes(), 0),
    }
    return {k: v.SerializeToString() for k, v in out.items()}


def _decode_and_transform(value, color, crop):
    from caffepy.data.datum import datum_to_array, parse_datum
    from caffepy.data.transformer import DataTransformer
    from caffepy.proto import caffe_pb2

    datum = parse_datum(value, "record 'fuzz'")
    image = datum_to_array(datum, "record 'fuzz'", color)
    param = caffe_pb2.TransformationParameter(scale=0.5, mirror=True, crop_size=crop)
    param.mean_value.append(10.0)
    transformer = DataTransformer(param, rng=np.random.default_rng(0))
    transformer.check_image(image.shape, "record 'fuzz'")
    transformer.transform([image, image])


@FUZZ
@given(
    kind=st.sampled_from(["raw", "float", "png", "jpg"]),
    color=st.sampled_from([None, True, False]),
    crop=st.sampled_from([0, 4]),
    mutations=BYTE_MUTATIONS,
)
def test_fuzz_datum(kind, color, crop, mutations, datums):
    survives(_decode_and_transform, mutate_bytes(datums[kind], mutations), color, crop)


# -- the unmutated inputs work (so the mutants reach deep code) -------------------------------
def test_unmutated_inputs_work(small_net, weight_files, solvers, datums, scratch):
    for text in BUILD_NETS.values():
        for phase in (0, 1):
            _build_and_run(text, phase)
    for text in SOLVERS.values():
        _solver_param(text)
    for kind, data in weight_files.items():
        path = scratch / f"{kind}.caffemodel"
        path.write_bytes(data)
        _read_and_copy(str(path), small_net)
    for solver, state, sidecar in solvers.values():
        _restore(solver, scratch, state, sidecar)
        _restore(solver, scratch, state, _mutate_json(sidecar, []))
    for data in datums.values():
        for color in (None, True, False):
            _decode_and_transform(data, color, 4)
