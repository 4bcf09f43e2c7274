"""``import caffe``: pycaffe's API, served by caffepy (see docs/PYCAFFE.md)."""

from caffe import proto  # noqa: F401
from caffepy.pycaffe.api import *  # noqa: F403
from caffepy.pycaffe.api import __version__  # noqa: F401
