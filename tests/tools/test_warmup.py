"""caffepy warmup: the cache it fills is the one training reads."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from caffepy.cli import cli
from caffepy.tools.warmup import COMMON, EXTRA, _run_unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The Data layer's path in a fresh process: which signatures of transform_batch
# came from the cache and which were compiled.
_USE = """
import json, numpy as np
from caffepy import TRAIN
from caffepy.data.datum import RawBatchParser, array_to_datum
from caffepy.data.transformer import DataTransformer
from caffepy.kernels.data import transform_batch
from caffepy.proto import caffe_pb2
values = [array_to_datum(np.ones((3, 5, 6), np.uint8), 1).SerializeToString()] * 3
buf, offsets, _, shape = RawBatchParser().parse(values)
tr = DataTransformer(caffe_pb2.TransformationParameter(scale=2, mirror=True), TRAIN)
tr.transform_flat(buf, offsets, shape)
s = transform_batch.stats
print(json.dumps([sum(s.cache_hits.values()), sum(s.cache_misses.values())]))
"""


def _python(code, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=ROOT,
    )
    return out.stdout


def test_warmup_fills_the_cache_that_a_data_layer_then_reads(tmp_path):
    cache = tmp_path / "numba"
    cache.mkdir()
    assert json.loads(_python(_USE, cache)) == [0, 1]  # cold: compiled
    cache2 = tmp_path / "numba2"
    cache2.mkdir()
    code = (
        "from caffepy.tools.warmup import warmup\n"
        "r = warmup(['data'], jobs=1)\n"
        "print(r['cache'])\n"
    )
    where = _python(code, cache2).strip()
    assert where.startswith(str(cache2))
    assert any(name.startswith("data.transform_batch") for name in os.listdir(where))
    assert json.loads(_python(_USE, cache2)) == [1, 0]  # warm: loaded


def test_units_and_command_line():
    assert set(COMMON).isdisjoint(EXTRA)
    with pytest.raises(ValueError, match="unknown warmup unit 'nope'"):
        _run_unit("nope")
    result = CliRunner().invoke(cli, ["warmup", "--help"])
    assert result.exit_code == 0 and "--jobs" in result.output


def test_kernels_cached_tells_a_cold_cache_from_a_warm_one(tmp_path):
    code = (
        "import sys\n"
        "from caffepy.tools.warmup import kernels_cached, warmup\n"
        "print(kernels_cached())\n"
        "if len(sys.argv) > 1:\n"
        "    warmup(['conv.backward'], jobs=1)\n"
        "    print(kernels_cached())\n"
    )
    assert _python(code, tmp_path).split() == ["False"]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code, "warm"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.split() == ["False", "True"]
    assert _python(code, tmp_path).split() == ["True"]  # a new process reads it


def test_units_for_lenet_are_the_kernels_its_layers_choose(tmp_path, monkeypatch):
    from caffepy import TRAIN, Net
    from caffepy.backend.cpu import conv as cpu_conv
    from caffepy.tools.warmup import units_for
    from tests.test_diagnose import fashion_workdir

    fashion_workdir(tmp_path, monkeypatch)
    net = Net("models/lenet/train_val.prototxt", TRAIN)
    convs = [layer for layer in net.layers if layer.type == "Convolution"]
    paths = {cpu_conv.kernel_paths(layer.geom) for layer in convs}
    if paths != {("rows", "rows")}:  # no BLAS to call from the kernels
        pytest.skip(f"LeNet's convolutions run on {paths}")
    want = ["rows.backward", "solver", "pool.max", "rows.forward", "data"]
    assert units_for(net) == want
    assert units_for(net, backward=False) == [u for u in want if u != "rows.backward"]


def test_units_for_a_wide_3x3_net_include_winograd():
    from google.protobuf import text_format

    from caffepy import TEST, Net
    from caffepy.backend.cpu import conv as cpu_conv
    from caffepy.proto import caffe_pb2
    from caffepy.tools.warmup import units_for

    param = text_format.Parse(
        """
        layer { name: "in" type: "Input" top: "x"
                input_param { shape { dim: 1 dim: 64 dim: 12 dim: 12 } } }
        layer { name: "conv" type: "Convolution" bottom: "x" top: "y"
                convolution_param { num_output: 64 kernel_size: 3 pad: 1 } }
        """,
        caffe_pb2.NetParameter(),
    )
    net = Net(None, TEST, param=param)
    if cpu_conv.kernel_paths(net.layers[1].geom)[0] != "winograd":
        pytest.skip("no BLAS to call from the kernels")
    assert units_for(net, backward=False) == ["winograd"]
    _run_unit("winograd")  # compiles (or loads) and runs the unit's kernels


def test_compile_ahead_runs_the_cold_units_in_one_process_per_core(monkeypatch, caplog):
    from caffepy.tools import train as train_tool
    from caffepy.tools import warmup as w

    calls = []
    monkeypatch.setattr(w, "units_for", lambda net: ["rows.backward", "solver", "data"])
    monkeypatch.setattr(w, "kernels_cached", lambda units: units != ["solver"])
    monkeypatch.setattr(w, "cpu_count", lambda: 4)
    monkeypatch.setattr(
        w, "warmup", lambda units, **kw: calls.append((units, kw)) or {"seconds": 1.0}
    )
    monkeypatch.delenv("CAFFEPY_COMPILE_AHEAD", raising=False)
    with caplog.at_level("INFO", logger="caffepy"):
        train_tool.compile_ahead(net=None)
    assert "Compiling the kernels for this machine" in caplog.text
    assert calls == []  # one cold unit: nothing to share out
    monkeypatch.setattr(w, "kernels_cached", lambda units: False)
    caplog.clear()
    with caplog.at_level("INFO", logger="caffepy"):
        train_tool.compile_ahead(net=None)
    assert "in 3 processes" in caplog.text and "Compiled in 1.0 s" in caplog.text
    assert calls[0][0] == ["rows.backward", "solver", "data"]
    assert calls[0][1]["jobs"] == 3 and calls[0][1]["here"] is True
    monkeypatch.setenv("CAFFEPY_COMPILE_AHEAD", "0")
    train_tool.compile_ahead(net=None)
    assert len(calls) == 1  # switched off: left to first use
    monkeypatch.setattr(w, "kernels_cached", lambda units: True)
    monkeypatch.delenv("CAFFEPY_COMPILE_AHEAD")
    caplog.clear()
    train_tool.compile_ahead(net=None)
    assert len(calls) == 1 and "Compiling" not in caplog.text  # warm: nothing


def test_warmup_here_shares_the_units_with_a_helper_process(tmp_path):
    # this process compiles too: every unit is done once, by one of the two
    code = (
        "import json\n"
        "from caffepy.tools.warmup import kernels_cached, warmup\n"
        "r = warmup(['pool.ave', 'data', 'eltwise'], jobs=2, threads=1, here=True)\n"
        "print(json.dumps([sorted(r['units']),"
        " kernels_cached(['pool.ave', 'data', 'eltwise'])]))\n"
    )
    units, cached = json.loads(_python(code, tmp_path))
    assert units == ["data", "eltwise", "pool.ave"]
    assert cached is True
