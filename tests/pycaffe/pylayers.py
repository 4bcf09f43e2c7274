"""Python layers written as pycaffe users write them (``import caffe``), loaded by
the nets of test_python_layer.py through ``python_param``."""

import caffe


class TimesTen(caffe.Layer):
    """y = 10 x."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 10 * top[0].diff


class Failing(caffe.Layer):
    """Setup raises, as a user's bug would."""

    def setup(self, bottom, top):
        raise RuntimeError("setup failed on purpose")


class WithParameter(caffe.Layer):
    """One parameter blob: 0 after setup, its diff set to 1 by backward."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = 0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] = 1


class Phase(caffe.Layer):
    """A scalar top holding the layer's phase."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape()

    def forward(self, bottom, top):
        top[0].data[()] = self.phase


class TimesParamStr(caffe.Layer):
    """y = v x with v the float in param_str."""

    def setup(self, bottom, top):
        try:
            self.value = float(self.param_str)
        except ValueError:
            raise ValueError("Parameter string must be a legible float") from None

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.value * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.value * top[0].diff


class PlusParamStrUnderscore(caffe.Layer):
    """y = x + v, v read from ``param_str_``: the attribute Caffe set before 2016
    and py-faster-rcnn's layers still read."""

    def setup(self, bottom, top):
        self.value = float(self.param_str_)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data + self.value

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff


class MultilabelData(caffe.Layer):
    """A data layer as pascal-multilabel's: images and a multi-hot label.

    ``param_str`` is a Python dict literal: ``batch_size``, ``classes`` (K),
    ``side`` (images are 3 x side x side), ``seed``. Each class owns a fixed
    random pattern; an image is the sum of the patterns of its present classes
    plus noise, so the labels are learnable from the pixels.
    """

    def setup(self, bottom, top):
        import ast

        import numpy as np

        params = ast.literal_eval(self.param_str)
        self.batch_size = params["batch_size"]
        self.classes = params["classes"]
        self.side = params["side"]
        self.rng = np.random.default_rng(params["seed"])
        shape = (self.classes, 3, self.side, self.side)
        self.patterns = np.random.default_rng(0).normal(size=shape)
        if len(top) != 2:
            raise Exception("Need two tops: data and label.")
        if len(bottom) != 0:
            raise Exception("Do not define a bottom.")

    def reshape(self, bottom, top):
        top[0].reshape(self.batch_size, 3, self.side, self.side)
        top[1].reshape(self.batch_size, self.classes)

    def forward(self, bottom, top):
        labels = self.rng.integers(2, size=(self.batch_size, self.classes))
        images = labels @ self.patterns.reshape(self.classes, -1)
        images = images + 0.3 * self.rng.normal(size=images.shape)
        top[0].data[...] = images.reshape(top[0].data.shape)
        top[1].data[...] = labels

    def backward(self, top, propagate_down, bottom):
        pass
