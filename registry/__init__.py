"""Layer 6: mmengine registries of the ``rankssl`` scope.

Each registry is a child of mmengine's root registry of the same kind, so recipes
build rankssl components with ``default_scope='rankssl'`` (``type='GroCo'``) or with
the scope prefix from any other scope (``type='rankssl.GroCo'``); mmengine imports this
module by itself when it meets the prefix, so no ``custom_imports`` are needed.
Components are registered by the modules listed in ``locations``
(``rankssl.registry.models``, ``.data``, ``.evaluation``), which mmengine imports the
first time a registry is used; ``rankssl.registry.plugins`` then loads the
``rankssl.plugins`` entry points. Importing this module imports none of them.

Example:
    >>> from mmengine.registry import MODELS as ROOT
    >>> loss = ROOT.build(dict(type='rankssl.GroCoLoss', n_negatives=4))
    >>> type(loss).__name__
    'GroCoLoss'
"""

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS

from rankssl.registry._base import RankSSLRegistry, UnknownComponentError

SCOPE = "rankssl"
_PLUGINS = "rankssl.registry.plugins"


def _child(parent, *modules: str) -> RankSSLRegistry:
    return RankSSLRegistry(parent.name, parent=parent, scope=SCOPE, locations=[*modules, _PLUGINS])


MODELS = _child(MMENGINE_MODELS, "rankssl.registry.models")
MODEL_WRAPPERS = _child(MMENGINE_MODEL_WRAPPERS, "rankssl.registry.models")
WEIGHT_INITIALIZERS = _child(MMENGINE_WEIGHT_INITIALIZERS)
DATASETS = _child(MMENGINE_DATASETS, "rankssl.registry.data")
DATA_SAMPLERS = _child(MMENGINE_DATA_SAMPLERS, "rankssl.registry.data")
TRANSFORMS = _child(MMENGINE_TRANSFORMS, "rankssl.registry.data")
METRICS = _child(MMENGINE_METRICS, "rankssl.registry.evaluation")
EVALUATOR = _child(MMENGINE_EVALUATOR, "rankssl.registry.evaluation")
HOOKS = _child(MMENGINE_HOOKS, "rankssl.registry.evaluation")
OPTIMIZERS = _child(MMENGINE_OPTIMIZERS, "rankssl.registry.optim")
OPTIM_WRAPPERS = _child(MMENGINE_OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(MMENGINE_PARAM_SCHEDULERS)
RUNNERS = _child(MMENGINE_RUNNERS)
LOOPS = _child(MMENGINE_LOOPS)
LOG_PROCESSORS = _child(MMENGINE_LOG_PROCESSORS)
VISUALIZERS = _child(MMENGINE_VISUALIZERS)
VISBACKENDS = _child(MMENGINE_VISBACKENDS)
FUNCTIONS = _child(MMENGINE_FUNCTIONS)

ALL_REGISTRIES = (
    MODELS,
    MODEL_WRAPPERS,
    WEIGHT_INITIALIZERS,
    DATASETS,
    DATA_SAMPLERS,
    TRANSFORMS,
    METRICS,
    EVALUATOR,
    HOOKS,
    OPTIMIZERS,
    OPTIM_WRAPPERS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    PARAM_SCHEDULERS,
    RUNNERS,
    LOOPS,
    LOG_PROCESSORS,
    VISUALIZERS,
    VISBACKENDS,
    FUNCTIONS,
)


def import_all() -> None:
    """Import every registering module and load the plugins (what ``rankssl list`` shows)."""
    for registry in ALL_REGISTRIES:
        registry.import_from_location()


__all__ = [
    "ALL_REGISTRIES",
    "DATASETS",
    "DATA_SAMPLERS",
    "EVALUATOR",
    "FUNCTIONS",
    "HOOKS",
    "LOG_PROCESSORS",
    "LOOPS",
    "METRICS",
    "MODELS",
    "MODEL_WRAPPERS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "RUNNERS",
    "SCOPE",
    "TRANSFORMS",
    "VISBACKENDS",
    "VISUALIZERS",
    "WEIGHT_INITIALIZERS",
    "RankSSLRegistry",
    "UnknownComponentError",
    "import_all",
]
