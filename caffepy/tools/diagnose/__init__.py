"""Make the training lore visible: initialisation, activations, the overfit check.

- :mod:`~caffepy.tools.diagnose.init`: a deep fully connected net's activation
  statistics per layer, for a filler, a nonlinearity, with or without BatchNorm
  (``caffepy diagnose init``).
- :mod:`~caffepy.tools.diagnose.activations`: one forward and backward of a user's
  net, with findings in words (``caffepy diagnose activations``).
- :mod:`~caffepy.tools.diagnose.overfit`: train on a tiny subset with
  regularisation off until it is memorised (``caffepy diagnose overfit``).
"""

from caffepy.tools.diagnose.activations import (
    BINARY_TARGETS,
    DEAD,
    EXPLODE_STD,
    LABEL_LAYERS,
    RATIO_HIGH,
    RATIO_LOW,
    SATURATED,
    VANISH_STD,
    ActivationReport,
    BlobReport,
    ParamReport,
    activation_report,
    diagnose_net,
    fill_inputs,
    findings_for,
    format_activation_report,
    label_inputs,
)
from caffepy.tools.diagnose.init import (
    NONLINEARITIES,
    InitResult,
    LayerStats,
    filler_text,
    format_table,
    init_experiment,
    init_net_text,
    plot_init,
    run_init,
)
from caffepy.tools.diagnose.overfit import (
    OverfitResult,
    overfit,
    overfit_message,
    overfit_setup,
    read_samples,
    run_overfit,
    subset_accuracy,
)

__all__ = [
    "BINARY_TARGETS",
    "DEAD",
    "EXPLODE_STD",
    "LABEL_LAYERS",
    "NONLINEARITIES",
    "RATIO_HIGH",
    "RATIO_LOW",
    "SATURATED",
    "VANISH_STD",
    "ActivationReport",
    "BlobReport",
    "InitResult",
    "LayerStats",
    "OverfitResult",
    "ParamReport",
    "activation_report",
    "diagnose_net",
    "fill_inputs",
    "filler_text",
    "findings_for",
    "format_activation_report",
    "format_table",
    "init_experiment",
    "init_net_text",
    "label_inputs",
    "overfit",
    "overfit_message",
    "overfit_setup",
    "plot_init",
    "read_samples",
    "run_init",
    "run_overfit",
    "subset_accuracy",
]
