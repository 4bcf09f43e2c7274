import caffepy


class Mine(caffepy.Layer):
    def setup(self, bottom, top):
        self.size = {}["size"]

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
