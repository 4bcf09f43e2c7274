"""Two layers with one name, as BVLC Caffe accepts them (its own
``mnist_autoencoder.prototxt`` has them): the behaviour recorded in
``caffe-golden-2/facts/duplicate_layer_names.json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import caffepy
from caffepy.errors import WeightsError
from tests.conftest import FIXTURES, require_fixtures

DUP = FIXTURES / "caffe-golden-2" / "facts"


@pytest.fixture
def facts(monkeypatch):
    require_fixtures()
    monkeypatch.chdir(DUP / "dup")
    return json.loads((DUP / "duplicate_layer_names.json").read_text())


def _first_values(net):
    """[weight[0], bias[0]] of each layer with blobs, in net order."""
    return [
        [float(layer.blobs[0].data.flat[0]), float(layer.blobs[1].data.flat[0])]
        for layer in net.layers
        if len(layer.blobs)
    ]


def test_duplicate_names_build_and_run_independently(facts):
    net = caffepy.Net("dup_net.prototxt", caffepy.TEST)
    assert list(net._layer_names) == facts["layer_names"]
    assert list(net.blobs) == facts["blob_names"]
    want = [v for v in facts["layers_weight_bias_first_value"] if v is not None]
    np.testing.assert_allclose(_first_values(net), want, rtol=1e-7)
    net.blobs["x"].data[...] = 1.5  # a row summing to 6, as the recorded input
    net.forward()
    np.testing.assert_allclose(net.blobs["y1"].data[0], facts["forward_y1_row0"])
    np.testing.assert_allclose(net.blobs["y2"].data[0], facts["forward_y2_row0"])


def test_duplicate_names_params_and_layer_dict_keep_the_last(facts):
    net = caffepy.Net("dup_net.prototxt", caffepy.TEST)
    assert list(net.params) == facts["pycaffe_params_keys"]
    ip = net.params["ip"]
    got = [float(ip[0].data.flat[0]), float(ip[1].data.flat[0])]
    np.testing.assert_allclose(got, facts["pycaffe_params_ip"], rtol=1e-7)
    layer = net.layer_dict["ip"]
    assert layer is net.layers[-1]
    # One entry, at the first layer's position.
    assert list(net.layer_dict) == ["input", "x_input_0_split", "ip"]


def test_duplicate_names_saved_and_copied_as_caffe(facts, tmp_path):
    net = caffepy.Net("dup_net.prototxt", caffepy.TEST)
    saved = tmp_path / "dup.caffemodel"
    net.save(str(saved))
    proto = caffepy.proto.caffe_pb2.NetParameter()
    proto.ParseFromString(saved.read_bytes())
    written = [(lp.name, lp.type) for lp in proto.layer if lp.blobs]
    want = [(n, t) for n, t, v in facts["saved_caffemodel_layers"] if v]
    assert written == want

    target = caffepy.Net("dup_net_other_fillers.prototxt", caffepy.TEST)
    np.testing.assert_allclose(
        _first_values(target), facts["copy_target_before"], rtol=1e-7
    )
    target.copy_from(str(saved))
    np.testing.assert_allclose(
        _first_values(target), facts["copy_from_dup_model_into_dup_net"], rtol=1e-7
    )
    # Caffe's own model of this net copies the same way.
    target = caffepy.Net("dup_net_other_fillers.prototxt", caffepy.TEST)
    target.copy_from("dup_saved.caffemodel")
    np.testing.assert_allclose(
        _first_values(target), facts["copy_from_dup_model_into_dup_net"], rtol=1e-7
    )

    target = caffepy.Net("dup_net_other_fillers.prototxt", caffepy.TEST)
    target.copy_from("single.caffemodel")
    np.testing.assert_allclose(
        _first_values(target), facts["copy_from_single_model_into_dup_net"], rtol=1e-7
    )

    single = caffepy.Net("single_net.prototxt", caffepy.TEST)
    single.copy_from("dup_saved.caffemodel")
    np.testing.assert_allclose(
        _first_values(single), facts["copy_from_dup_model_into_single_net"], rtol=1e-7
    )

    built = caffepy.Net(
        "dup_net_other_fillers.prototxt", caffepy.TEST, weights="dup_saved.caffemodel"
    )
    np.testing.assert_allclose(
        _first_values(built), facts["net_ctor_weights_dup_model"], rtol=1e-7
    )


def test_duplicate_names_share_weights_with_the_first(facts):
    source = caffepy.Net("dup_net.prototxt", caffepy.TEST)
    target = caffepy.Net("dup_net_other_fillers.prototxt", caffepy.TEST)
    target.share_weights(source)
    # The last source layer of the name is shared into the first target layer.
    np.testing.assert_allclose(_first_values(target), [[2, 0.2], [6, 0.6]], rtol=1e-7)


def test_duplicate_names_save_hdf5_is_a_clear_error(facts, tmp_path):
    pytest.importorskip("h5py")
    net = caffepy.Net("dup_net.prototxt", caffepy.TEST)
    out = tmp_path / "dup.caffemodel.h5"
    with pytest.raises(WeightsError, match="two layers named 'ip'"):
        net.save_hdf5(str(out))
    assert not out.exists()
