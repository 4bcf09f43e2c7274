"""Loss layers (SoftmaxWithLoss, InfogainLoss, MultinomialLogisticLoss,
SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss, ContrastiveLoss) and
Accuracy, one module each.

A loss top is a 0-d blob. The Net writes the loss weight into its diff before
backward, so every backward scales its gradient by that diff (handed to the op
as an array: it never leaves the device). Labels are stored as floats and read
as Caffe does (``static_cast<int>``: truncation toward zero). The numeric work
is the active backend's loss ops (:mod:`caffepy.backend`), softmax included.

Importing this package registers its layer types.
"""

from caffepy.layers.loss import (  # noqa: F401
    accuracy,
    contrastive_loss,
    euclidean_loss,
    hinge_loss,
    infogain_loss,
    multinomial_logistic_loss,
    sigmoid_cross_entropy_loss,
    softmax_loss,
)
