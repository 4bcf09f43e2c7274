"""The layer registry, keyed by the type strings used in prototxt (solvers have
theirs in :mod:`caffepy.solvers.registry`)."""

from caffepy.errors import UnsupportedError, did_you_mean

_LAYERS = {}
_CREATORS = {}

#: Types BVLC Caffe knows that caffepy does not implement yet.
UNSUPPORTED_LAYERS = {
    "Recurrent",
    "ImageData_Multi",
}


def register_layer(type_name):
    """Class decorator: make a Layer subclass creatable from ``type: "<type_name>"``."""

    def wrap(cls):
        if type_name in _LAYERS and _LAYERS[type_name] is not cls:
            raise ValueError(f"layer type {type_name!r} registered twice")
        _LAYERS[type_name] = cls
        cls.type_name = type_name
        return cls

    return wrap


def _load_builtin_layers():
    # Importing the families registers their layers.
    import caffepy.layers  # noqa: F401


def layer_class(type_name, where=""):
    """The Layer subclass for a prototxt type string, or a clear error."""
    _load_builtin_layers()
    cls = _LAYERS.get(type_name)
    if cls is not None:
        return cls
    suffix = f" in {where}" if where else ""
    if type_name in UNSUPPORTED_LAYERS:
        raise UnsupportedError(
            f"layer type {type_name!r}{suffix} is a Caffe layer caffepy does not support "
            "yet"
        )
    raise UnsupportedError(
        f"unknown layer type {type_name!r}{suffix}{did_you_mean(type_name, _LAYERS)}; "
        "caffepy.layer_type_list() lists the known types"
    )


def register_layer_creator(type_name):
    """Function decorator: create ``type: "<type_name>"`` layers with it, as
    Caffe's ``REGISTER_LAYER_CREATOR`` (the Python layer builds the user's class).

    The creator is called as ``creator(layer_param, phase, dtype)``; the type must
    also have a registered class (for its parameter-blob count, ...).
    """

    def wrap(fn):
        _CREATORS[type_name] = fn
        return fn

    return wrap


def create_layer(layer_param, phase, dtype, where=""):
    """The layer for ``layer_param`` (Caffe's ``LayerRegistry::CreateLayer``): its
    type's creator where one is registered, else its class."""
    cls = layer_class(layer_param.type, where)
    creator = _CREATORS.get(layer_param.type)
    if creator is not None:
        return creator(layer_param, phase, dtype)
    return cls(layer_param, phase, dtype)


def layer_type_list():
    """Sorted list of the registered layer type names (as pycaffe's)."""
    _load_builtin_layers()
    return sorted(_LAYERS)
