"""What the ``caffepy`` commands call; ``caffepy/cli/`` only parses and calls.

- training: :mod:`~caffepy.tools.train` (train, finetune), :mod:`~caffepy.tools.score`
  (test, time), :mod:`~caffepy.tools.device` (threads, ``--gpu``, device_query),
  :mod:`~caffepy.tools.glog` (Caffe's log format), :mod:`~caffepy.tools.cliargs`
  (Caffe's single-dash flags, the GPU id);
- nets: :mod:`~caffepy.tools.netsurgery` (every NetParameter transformation),
  :mod:`~caffepy.tools.summary`, :mod:`~caffepy.tools.draw_net`,
  :mod:`~caffepy.tools.diagnose`;
- data and logs: convert_imageset, compute_image_mean, extract_features,
  fashion_mnist, logs;
- pycaffe's scripts: :mod:`~caffepy.tools.classify`, :mod:`~caffepy.tools.detect`.
"""
