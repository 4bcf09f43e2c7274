"""Layer and solver registries, keyed by the type strings used in prototxt."""

from caffepy.errors import UnsupportedError, did_you_mean

_LAYERS = {}
_SOLVERS = {}

#: Types BVLC Caffe knows that caffepy does not implement yet.
UNSUPPORTED_LAYERS = {
    "LSTM", "RNN", "Recurrent", "SPP", "WindowData", "HDF5Data", "HDF5Output",
    "ImageData_Multi", "Im2col", "BatchReindex", "Filter", "Parameter",
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


def register_solver(type_name):
    def wrap(cls):
        _SOLVERS[type_name] = cls
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


def layer_type_list():
    """Sorted list of the registered layer type names (as pycaffe's)."""
    _load_builtin_layers()
    return sorted(_LAYERS)


def solver_class(type_name):
    import caffepy.solvers  # noqa: F401

    cls = _SOLVERS.get(type_name)
    if cls is None:
        from caffepy.errors import SolverError

        raise SolverError(
            f"unknown solver type {type_name!r}{did_you_mean(type_name, _SOLVERS)}; "
            f"known types: {', '.join(sorted(_SOLVERS))}"
        )
    return cls


def solver_type_list():
    import caffepy.solvers  # noqa: F401

    return sorted(_SOLVERS)
