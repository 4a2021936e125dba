"""The names options choose from, in one torch-free module.

The command line builds its parser from these without importing torch (``factorkit --help`` and
``--version`` stay instant); the modules that implement each choice import the same tuples, and
``tests/test_cli.py`` checks them against what those modules accept.
"""

ACTIVATIONS = ("linear", "relu", "leaky_relu", "tanh")
MEASUREMENT_KINDS = ("gaussian", "completion")
PRIORS = ("gaussian", "normalized_gaussian", "uniform", "normalized_uniform")
BACKENDS = ("auto", "direct", "reparam")
LAYER_SCALINGS = ("fan_out", "fan_in")
SAMPLERS = ("rejection", "smc", "marginal", "auto")
LOSSES = ("l2", "l1")
TORCH_OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam", "radam")
OPTIMIZERS = ("gd", "group_rmsprop", "adafactor", "adafactor_theory", *TORCH_OPTIMIZER_NAMES)
SCALES = ("smoke", "default", "paper", "beyond")
PRESET_NAMES = (
    "width",
    "depth",
    "width_rank2",
    "depth_rank2",
    "width_uniform",
    "depth_uniform",
    "width_completion",
    "depth_completion",
    "depth_unnormalized",
    "width_momentum",
    "depth_momentum",
    "robust",
    "optimizers",
    "depth_fit",
    "width_limit",
    "depth_limit",
)
EXECUTORS = ("process", "dask")
FIGURE_FORMATS = ("png", "pdf", "svg")
