"""``import caffe`` gives caffepy, with pycaffe's module layout; a real pycaffe
earlier on sys.path still wins."""

import os
import subprocess
import sys

import caffe


def test_the_surface_is_caffepys():
    import caffe.classifier
    import caffe.coord_map
    import caffe.detector
    import caffe.draw
    import caffe.io
    import caffe.net_spec
    import caffe.proto.caffe_pb2
    import caffepy.proto.caffe_pb2

    assert caffe.proto.caffe_pb2 is caffepy.proto.caffe_pb2
    assert caffe.io.__name__ == "caffepy.pycaffe.io"
    assert caffe.Net is caffepy.Net and caffe.Layer is caffepy.Layer
    assert caffe.SGDSolver is caffepy.SGDSolver
    assert caffe.NetSpec is caffe.net_spec.NetSpec
    assert (
        caffe.layers is caffe.net_spec.layers and caffe.params is caffe.net_spec.params
    )
    assert caffe.to_proto is caffe.net_spec.to_proto
    assert caffe.Classifier is caffe.classifier.Classifier
    assert caffe.Detector is caffe.detector.Detector
    assert (
        (caffe.TRAIN, caffe.TEST)
        == (0, 1)
        == (caffe.proto.caffe_pb2.TRAIN, caffe.proto.caffe_pb2.TEST)
    )
    assert caffe.__version__ == caffepy.__version__
    for name in (
        "set_mode_cpu",
        "set_mode_gpu",
        "set_device",
        "set_random_seed",
        "init_log",
        "log",
        "Timer",
        "get_solver",
        "layer_type_list",
        "set_multiprocess",
        "set_solver_count",
        "set_solver_rank",
    ):
        assert callable(getattr(caffe, name)), name


def test_timer_and_log(caplog):
    t = caffe.Timer()
    assert t.ms == 0.0
    t.start()
    sum(range(10000))
    t.stop()
    assert t.ms > 0
    caffe.log("hello from pycaffe")


def test_a_real_pycaffe_earlier_on_the_path_wins(tmp_path):
    fake = tmp_path / "caffe"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL_PYCAFFE = True\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", "import caffe; print(caffe.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(tmp_path.parent),
    )
    assert out.stdout.strip() == str(fake / "__init__.py")
