"""Neuron layers: element-wise functions of one bottom, one top of the same shape.

ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip,
Swish and Dropout, with BVLC Caffe's formulas and parameters. Every layer here
works in place (``top[0] is bottom[0]``): a layer whose backward needs the input
keeps a copy of it in its workspace when computing in place. The numeric work is
one op of the active backend (:mod:`caffepy.backend`) per pass.

Importing this package registers its layer types.
"""

from caffepy.layers.neuron import (  # noqa: F401
    dropout,
    piecewise,
    power,
    relu,
    sigmoid_tanh,
)
