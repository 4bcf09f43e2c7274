"""pycaffe's Python surface, implemented on caffepy (``import caffe`` lands here).

The top-level names (``caffe.Net``, ``caffe.SGDSolver``, ``caffe.Timer``, ...)
live in :mod:`caffepy.pycaffe.api`; the modules mirror pycaffe's:
:mod:`~caffepy.pycaffe.io` (Transformer, image and proto converters),
:mod:`~caffepy.pycaffe.net_spec` (NetSpec, ``layers``, ``params``),
:mod:`~caffepy.pycaffe.coord_map`, :mod:`~caffepy.pycaffe.draw` (pydot),
:mod:`~caffepy.pycaffe.classifier` and :mod:`~caffepy.pycaffe.detector`. The Net
and Solver methods only pycaffe has are mixins (:mod:`~caffepy.pycaffe.net_api`,
:mod:`~caffepy.pycaffe.solver_api`) that ``caffepy.Net``/``Solver`` inherit.

This package's ``__init__`` imports nothing, so ``caffepy.net`` and
``caffepy.solvers`` can import the mixins without a cycle.
"""
