"""NetState filtering, ported from Caffe's FilterNetTest (src/caffe/test/
test_net.cpp): phase, level, stage and not_stage rules, several rules, include
vs exclude. The expected nets are Caffe's; each case also checks idempotence."""

import pytest
from google.protobuf import text_format

from caffepy.errors import NetError
from caffepy.net import filter_net, state_meets_rule
from caffepy.proto import caffe_pb2


def L(name, type_, bottom=(), top=(), rules=""):
    b = " ".join(f"bottom: '{x}'" for x in bottom)
    t = " ".join(f"top: '{x}'" for x in top)
    return f"layer {{ name: '{name}' type: '{type_}' {b} {t} {rules} }}\n"


def parse(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def check_filter(given, expected):
    param = parse(given)
    out = filter_net(param, param.state)
    assert text_format.MessageToString(out) == text_format.MessageToString(
        parse(expected)
    )
    assert filter_net(out, out.state) == out


DATA = L("data", "Data", [], ["data", "label"])


def IP(rules=""):
    return L("innerprod", "InnerProduct", ["data"], ["innerprod"], rules)


def LOSS(rules=""):
    return L("loss", "SoftmaxWithLoss", ["innerprod", "label"], [], rules)


def net(state="", ip="", loss="", with_ip=True, with_loss=True):
    return (
        f"{state} name: 'TestNetwork' "
        + DATA
        + (IP(ip) if with_ip else "")
        + (LOSS(loss) if with_loss else "")
    )


def test_no_filter():
    check_filter(net(), net())


def test_filter_lenet_train_test():
    train_data = L(
        "mnist",
        "Data",
        [],
        ["data", "label"],
        "data_param { source: 'mnist-train-leveldb' batch_size: 64 } "
        "transform_param { scale: 0.00390625 } include { phase: TRAIN }",
    )
    test_data = L(
        "mnist",
        "Data",
        [],
        ["data", "label"],
        "data_param { source: 'mnist-test-leveldb' batch_size: 100 } "
        "transform_param { scale: 0.00390625 } include { phase: TEST }",
    )
    body = L(
        "conv1",
        "Convolution",
        ["data"],
        ["conv1"],
        "param { lr_mult: 1 } param { lr_mult: 2 } convolution_param { "
        "num_output: 20 kernel_size: 5 stride: 1 weight_filler { type: "
        "'xavier' } bias_filler { type: 'constant' } }",
    ) + L(
        "ip1",
        "InnerProduct",
        ["conv1"],
        ["ip1"],
        "param { lr_mult: 1 } param { lr_mult: 2 } inner_product_param { "
        "num_output: 10 weight_filler { type: 'xavier' } bias_filler { "
        "type: 'constant' } }",
    )
    accuracy = L(
        "accuracy",
        "Accuracy",
        ["ip1", "label"],
        ["accuracy"],
        "include { phase: TEST }",
    )
    loss = L("loss", "SoftmaxWithLoss", ["ip2", "label"], ["loss"])
    given = "name: 'LeNet' " + train_data + test_data + body + accuracy + loss
    check_filter(
        "state { phase: TRAIN } " + given,
        "state { phase: TRAIN } name: 'LeNet' " + train_data + body + loss,
    )
    check_filter(
        "state { phase: TEST } " + given,
        "state { phase: TEST } name: 'LeNet' " + test_data + body + accuracy + loss,
    )


def test_filter_out_by_stage():
    given = (
        "name: 'TestNetwork' "
        + L("data", "Data", [], ["data", "label"], "include { stage: 'mystage' }")
        + IP()
        + LOSS()
    )
    check_filter(given, "name: 'TestNetwork' " + IP() + LOSS())


def test_filter_out_by_stage_2():
    check_filter(net(ip="include { stage: 'mystage' }"), net(with_ip=False))


def test_filter_in_by_stage():
    given = net("state { stage: 'mystage' }", ip="include { stage: 'mystage' }")
    check_filter(given, given)


def test_filter_in_by_stage_2():
    given = net(ip="exclude { stage: 'mystage' }")
    check_filter(given, given)


def test_filter_out_by_multiple_stage():
    state = "state { stage: 'mystage' }"
    loss = "include { stage: 'mystage' }"
    given = net(
        state, ip="include { stage: 'mystage' stage: 'myotherstage' }", loss=loss
    )
    check_filter(given, net(state, loss=loss, with_ip=False))


def test_filter_in_by_multiple_stage():
    given = net(
        "state { stage: 'mystage' }",
        ip="include { stage: 'myotherstage' } include { stage: 'mystage' }",
        loss="include { stage: 'mystage' }",
    )
    check_filter(given, given)


def test_filter_in_by_multiple_stage_2():
    given = net(
        "state { stage: 'mystage' stage: 'myotherstage' }",
        ip="include { stage: 'mystage' stage: 'myotherstage' }",
        loss="include { stage: 'mystage' }",
    )
    check_filter(given, given)


def test_filter_in_by_not_stage():
    rule = "include { not_stage: 'myotherstage' }"
    given = net("state { stage: 'mystage' }", ip=rule, loss=rule)
    check_filter(given, given)


def test_filter_out_by_not_stage():
    rule = "include { not_stage: 'mystage' }"
    state = "state { stage: 'mystage' }"
    check_filter(
        net(state, ip=rule, loss=rule), net(state, with_ip=False, with_loss=False)
    )


@pytest.mark.parametrize(
    "rule", ["include { min_level: 3 }", "include { max_level: -3 }"]
)
def test_filter_out_by_level(rule):
    check_filter(net(ip=rule), net(with_ip=False))


@pytest.mark.parametrize(
    ("state", "rule"),
    [
        ("", "include { min_level: 0 }"),
        ("state { level: 7 }", "include { min_level: 3 }"),
        ("", "include { max_level: 0 }"),
        ("state { level: -7 }", "include { max_level: -3 }"),
    ],
)
def test_filter_in_by_level(state, rule):
    given = net(state, ip=rule)
    check_filter(given, given)


def test_filter_in_out_by_include_multi_rule():
    ip = "include { min_level: 2 phase: TRAIN }"
    loss = "include { min_level: 2 phase: TEST }"
    train, test = "state { level: 4 phase: TRAIN }", "state { level: 4 phase: TEST }"
    check_filter(net(train, ip=ip, loss=loss), net(train, ip=ip, with_loss=False))
    check_filter(net(test, ip=ip, loss=loss), net(test, loss=loss, with_ip=False))


def test_filter_in_by_include_multi_rule():
    ip = "include { min_level: 2 phase: TRAIN } include { phase: TEST }"
    loss = "include { min_level: 2 phase: TEST } include { phase: TRAIN }"
    for state in ("state { level: 2 phase: TRAIN }", "state { level: 2 phase: TEST }"):
        given = net(state, ip=ip, loss=loss)
        check_filter(given, given)


def test_filter_in_out_by_exclude_multi_rule():
    ip = "exclude { min_level: 2 phase: TRAIN }"
    loss = "exclude { min_level: 2 phase: TEST }"
    train, test = "state { level: 4 phase: TRAIN }", "state { level: 4 phase: TEST }"
    check_filter(net(train, ip=ip, loss=loss), net(train, loss=loss, with_ip=False))
    check_filter(net(test, ip=ip, loss=loss), net(test, ip=ip, with_loss=False))


# -- beyond Caffe's cases ---------------------------------------------------------
def test_rule_with_every_condition():
    state = caffe_pb2.NetState(phase=caffe_pb2.TEST, level=1, stage=["a", "b"])
    rule = caffe_pb2.NetStateRule(
        phase=caffe_pb2.TEST, min_level=1, max_level=1, stage=["a"], not_stage=["c"]
    )
    assert state_meets_rule(state, rule)
    rule.not_stage.append("b")
    assert not state_meets_rule(state, rule)


def test_include_and_exclude_together_is_refused():
    param = parse(IP("include { phase: TRAIN } exclude { phase: TEST }"))
    with pytest.raises(NetError, match="'innerprod'.*either include rules or exclude"):
        filter_net(param, param.state)
