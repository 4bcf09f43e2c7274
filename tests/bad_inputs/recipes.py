"""Recipes that build the binary inputs of the bad-input catalogue at test time.

A case's ``case.json`` lists recipe steps as ``[name, path, {keyword arguments}]``;
:func:`build` runs them in the case's (copied) folder, in order, so a later step
can read what an earlier one wrote (a caffemodel made from a net built on an
LMDB, a truncated copy of a caffemodel, ...). Everything is tiny: 1 x 8 x 8
images, a few dozen records.
"""

import os

import numpy as np


def _datum_bytes(image, label):
    from caffepy.data.datum import array_to_datum

    return array_to_datum(image, label).SerializeToString()


def _images(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) * 255).astype(np.uint8)


def lmdb(path, n=40, shape=(1, 8, 8), labels=4, bad=None, bad_at=0, sizes=None):
    """An LMDB of ``n`` Datum records (labels cycle through ``range(labels)``).

    Args:
        bad: what to break in record ``bad_at``: ``"size"`` (data shorter than
            channels*height*width), ``"not_datum"`` (random bytes), ``"absurd"``
            (declares 10^12 values), ``"encoded"`` (undecodable encoded image),
            ``"label"`` (label 7, outside range(labels)).
        sizes: {first record index: (C, H, W)}: records from that index on have
            this shape (a database whose image size changes part-way).
    """
    from caffepy.data.db import LMDBWriter
    from caffepy.proto import caffe_pb2

    shapes = [tuple(shape)] * n
    for start, s in sorted((sizes or {}).items()):
        for i in range(int(start), n):
            shapes[i] = tuple(s)
    with LMDBWriter(path) as writer:
        for i in range(n):
            image = _images(1, shapes[i], seed=i)[0]
            value = _datum_bytes(image, i % labels)
            if bad is not None and i == bad_at:
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                if bad == "size":
                    datum.data = datum.data[:-5]
                elif bad == "absurd":
                    datum.channels, datum.height, datum.width = 10000, 10000, 10000
                elif bad == "encoded":
                    datum.encoded = True
                    datum.data = b"\x89PNG\r\n\x1a\n" + b"garbage" * 8
                elif bad == "label":
                    datum.label = 7
                value = datum.SerializeToString()
                if bad == "not_datum":
                    value = b"\xff\xfe not a datum \x00\x01" * 3
            writer.put(f"{i:08d}", value)


def empty_lmdb(path):
    """An LMDB database with no records."""
    import lmdb as _lmdb

    env = _lmdb.open(path, map_size=1 << 20, subdir=True)
    env.close()


def corrupt_lmdb(path, mode="garbage"):
    """An LMDB folder whose data.mdb is garbage (``"garbage"``) or a valid
    database cut short (``"truncate"``)."""
    if mode == "garbage":
        os.makedirs(path, exist_ok=True)
        rng = np.random.default_rng(5)
        with open(os.path.join(path, "data.mdb"), "wb") as f:
            f.write(rng.integers(0, 256, 3 * 4096, np.uint8).tobytes())
        return
    lmdb(path, n=200)
    data = os.path.join(path, "data.mdb")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def partial_lmdb(path, locked=False):
    """What a conversion leaves while it runs (``locked``: a writer holds the lock)
    or after it was killed: only ``<path>.partial`` exists."""
    import fcntl

    lmdb(path + ".partial", n=10)
    fd = os.open(path + ".partial.lock", os.O_RDWR | os.O_CREAT, 0o644)
    if locked:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.append(fd)  # held (by this process) while the command runs
    else:
        os.close(fd)


_HELD = []


def release_locks():
    """Release the locks ``partial_lmdb(locked=True)`` took."""
    while _HELD:
        os.close(_HELD.pop())


def leveldb(path):
    """A folder that looks like a LevelDB database."""
    os.makedirs(path, exist_ok=True)
    for name, text in (
        ("CURRENT", "MANIFEST-000002\n"),
        ("MANIFEST-000002", "x"),
        ("000003.log", ""),
    ):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


def caffemodel(path, net, truncate=None, phase="TEST"):
    """The weights of the net prototxt ``net`` (filled by its fillers), optionally
    truncated to ``truncate`` of their bytes."""
    import caffepy

    model = caffepy.Net(net, getattr(caffepy, phase))
    model.save(path)
    if truncate is not None:
        with open(path, "r+b") as f:
            f.truncate(int(os.path.getsize(path) * float(truncate)))


def absurd_caffemodel(path, layer="ip1"):
    """A caffemodel whose layer ``layer`` declares a 10^12-element weight blob
    (holding 4 values) and a bias."""
    from caffepy.proto import caffe_pb2

    net = caffe_pb2.NetParameter(name="absurd")
    lp = net.layer.add(name=layer, type="InnerProduct")
    blob = lp.blobs.add()
    blob.shape.dim.extend([1000000, 1000000])
    blob.data.extend([0.0] * 4)
    lp.blobs.add().data.extend([0.0] * 16)
    with open(path, "wb") as f:
        f.write(net.SerializeToString())


def bad_utf8_caffemodel(path, net):
    """The weights of ``net`` with a layer name that is not UTF-8."""
    caffemodel(path, net)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"ip1", b"i\xbc1"))


def sidecar(path, key, value):
    """Replace ``key`` in the JSON sidecar of the solver state ``path``."""
    import json

    with open(path + ".caffepy.json", encoding="utf-8") as f:
        payload = json.load(f)
    payload[key] = value
    with open(path + ".caffepy.json", "w", encoding="utf-8") as f:
        json.dump(payload, f)


def solverstate(path, solver, truncate=None):
    """A snapshot of the solver prototxt ``solver`` at iteration 0 (its
    ``.caffemodel`` beside it), saved as ``path``."""
    import caffepy

    s = caffepy.get_solver(solver)
    model, state = s.snapshot()
    for net in [s.net, *s.test_nets]:
        for layer in net.data_layers:
            layer.close()
    os.replace(state, path)
    if os.path.exists(state + ".caffepy.json"):
        os.replace(state + ".caffepy.json", path + ".caffepy.json")
    if truncate is not None:
        with open(path, "r+b") as f:
            f.truncate(int(os.path.getsize(path) * float(truncate)))


def mean(path, shape=(1, 1, 8, 8), absurd=False):
    """A mean file (BlobProto, legacy 4-D fields) of ``shape``."""
    from caffepy.io.blobproto import write_binaryproto
    from caffepy.proto import caffe_pb2

    if absurd:
        proto = caffe_pb2.BlobProto(num=1, channels=100000, height=100000, width=100)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
        return
    write_binaryproto(path, np.full(shape, 100.0, np.float32))


def garbage(path, size=200, seed=3, text=None):
    """A file of random bytes (or of ``text``)."""
    with open(path, "wb") as f:
        if text is not None:
            f.write(text.encode("utf-8"))
        else:
            f.write(
                np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()
            )


def remove(path):
    """Delete a file an earlier step wrote."""
    os.unlink(path)


def copy(path, source, truncate=None):
    """A copy of ``source`` (optionally cut to ``truncate`` of its bytes)."""
    with open(source, "rb") as f:
        data = f.read()
    if truncate is not None:
        data = data[: int(len(data) * float(truncate))]
    with open(path, "wb") as f:
        f.write(data)


def image(path, shape=(8, 8), corrupt=False):
    """A PNG image (or a file named like one that holds no image)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if corrupt:
        garbage(path, text="this is not a PNG image\n")
        return
    import cv2

    cv2.imwrite(path, _images(1, shape)[0])


def edit_state(path, nan_history=False, **fields):
    """Set ``fields`` (iter, learned_net, ...) of the solver state ``path`` (and
    NaN in its first history blob with ``nan_history``); the sidecar's CRCs,
    which would now tell, are dropped."""
    import json

    from caffepy.solvers import state as state_io

    state = state_io.read_solverstate(path)
    for key, value in fields.items():
        setattr(state, key, value)
    if nan_history:
        state.history[0].data[0] = float("nan")
    with open(path, "wb") as f:
        f.write(state.SerializeToString())
    side = path + ".caffepy.json"
    if os.path.exists(side):
        with open(side, encoding="utf-8") as f:
            payload = json.load(f)
        payload.pop("crc32", None)
        with open(side, "w", encoding="utf-8") as f:
            json.dump(payload, f)


def fifo(path):
    """A named pipe (reading it blocks until a writer comes)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    os.mkfifo(path)


def folder(path):
    """An empty directory."""
    os.makedirs(path, exist_ok=True)


def symlink(path, target):
    """A symbolic link to ``target``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    os.symlink(target, path)


RECIPES = {
    "edit_state": edit_state,
    "fifo": fifo,
    "folder": folder,
    "symlink": symlink,
    "lmdb": lmdb,
    "empty_lmdb": empty_lmdb,
    "corrupt_lmdb": corrupt_lmdb,
    "partial_lmdb": partial_lmdb,
    "leveldb": leveldb,
    "caffemodel": caffemodel,
    "absurd_caffemodel": absurd_caffemodel,
    "solverstate": solverstate,
    "bad_utf8_caffemodel": bad_utf8_caffemodel,
    "sidecar": sidecar,
    "mean": mean,
    "garbage": garbage,
    "copy": copy,
    "remove": remove,
    "image": image,
}


def build(folder, steps):
    """Run the recipe ``steps`` ([name, path, kwargs]) inside ``folder``."""
    here = os.getcwd()
    os.chdir(folder)
    try:
        for step in steps:
            name, path = step[0], step[1]
            kwargs = step[2] if len(step) > 2 else {}
            RECIPES[name](path, **kwargs)
    finally:
        os.chdir(here)


# -- a tiny training setup, for the crash-safety and concurrency tests -------------------
MLP_NET = """name: "mlp"
layer {{
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{source}" batch_size: 10 backend: LMDB }}
}}
layer {{
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{test_source}" batch_size: 20 backend: LMDB }}
}}
layer {{
  name: "ip1"
  type: "InnerProduct"
  bottom: "data"
  top: "ip1"
  inner_product_param {{ num_output: {hidden} weight_filler {{ type: "xavier" }} }}
}}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{
  name: "ip2"
  type: "InnerProduct"
  bottom: "ip1"
  top: "ip2"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "xavier" }} }}
}}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
layer {{
  name: "acc"
  type: "Accuracy"
  bottom: "ip2"
  bottom: "label"
  top: "acc"
  include {{ phase: TEST }}
}}
"""


def mlp_training(
    folder,
    records=200,
    hidden=16,
    source="train_lmdb",
    test_source=None,
    solver="solver.prototxt",
    **solver_fields,
):
    """A 200-record LMDB of learnable 1 x 8 x 8 images (the label is the bright
    quadrant), an MLP on it and a solver, written into ``folder``.

    ``solver_fields`` override the solver's defaults (base_lr 0.1, momentum 0.9,
    fixed lr, display 10, max_iter 40, snapshot 10, snapshot_prefix "snap/mlp",
    no test net unless test_iter/test_interval are given).
    """
    from caffepy.data.db import LMDBWriter

    folder = os.fspath(folder)
    db = os.path.join(folder, source)
    if not os.path.exists(db):
        rng = np.random.default_rng(1701)
        with LMDBWriter(db) as writer:
            for i in range(records):
                label = i % 4
                img = (rng.random((1, 8, 8)) * 60).astype(np.uint8)
                r, c = (label // 2) * 4, (label % 2) * 4
                img[0, r : r + 4, c : c + 4] += 150
                writer.put(f"{i:08d}", _datum_bytes(img, label))
    with open(os.path.join(folder, "net.prototxt"), "w") as f:
        f.write(
            MLP_NET.format(
                source=source, test_source=test_source or source, hidden=hidden
            )
        )
    fields = {
        "net": '"net.prototxt"',
        "base_lr": 0.1,
        "momentum": 0.9,
        "lr_policy": '"fixed"',
        "display": 10,
        "max_iter": 40,
        "snapshot": 10,
        "snapshot_prefix": '"snap/mlp"',
        "random_seed": 1701,
    }
    fields.update(solver_fields)
    lines = []
    for key, value in fields.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key}: {v}")
    with open(os.path.join(folder, solver), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(folder, solver)
