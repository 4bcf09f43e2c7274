"""Solver upgrades: the legacy ``solver_type`` enum into the ``type`` string
(Caffe's ``UpgradeSolverType``)."""

from caffepy.errors import PrototxtError
from caffepy.io.upgrade.common import log
from caffepy.proto import caffe_pb2

#: Legacy ``SolverParameter.solver_type`` enum name -> ``type`` string.
SOLVER_TYPE_NAMES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}


# --------------------------------------------------------------------- solver
def solver_needs_upgrade(solver_param):
    """Whether the solver uses the legacy ``solver_type`` enum (Caffe's
    SolverNeedsTypeUpgrade)."""
    return solver_param.HasField("solver_type")


def upgrade_solver(solver_param, source=None):
    """Turn a legacy ``solver_type`` enum into the ``type`` string, in place.

    Args:
        solver_param: a ``caffe_pb2.SolverParameter``.
        source: the file it came from, for log lines and error messages.

    Returns:
        bool: whether anything changed.

    Raises:
        PrototxtError: ``solver_type`` and ``type`` are both set and disagree.
    """
    if not solver_needs_upgrade(solver_param):
        return False
    name = source if source is not None else "<solver>"
    enum_name = caffe_pb2.SolverParameter.SolverType.Name(solver_param.solver_type)
    new_type = SOLVER_TYPE_NAMES[enum_name]
    if solver_param.HasField("type") and solver_param.type != new_type:
        raise PrototxtError(
            f"the solver sets both the legacy solver_type ({enum_name}, i.e. "
            f"'{new_type}') and type ('{solver_param.type}'), which disagree; "
            "remove solver_type",
            path=source,
        )
    log.info(
        "Attempting to upgrade input file specified using deprecated "
        "'solver_type' field (enum)': %s",
        name,
    )
    solver_param.type = new_type
    solver_param.ClearField("solver_type")
    log.info(
        "Successfully upgraded file specified using deprecated 'solver_type' "
        "field (enum) to 'type' field (string)."
    )
    log.warning(
        "Note that future Caffe releases will only support 'type' field (string) "
        "for a solver's type."
    )
    return True
