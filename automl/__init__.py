"""AutoML on Ray: give it a table and a target column; it profiles the data, searches model
pipelines with Ray Tune, ensembles the winners and saves a deployable Predictor.

    from automl import AutoML, load
    run = AutoML(target="class", time_limit=300).fit("train.csv")
"""

from automl.api import AutoML, load
from automl.config import EnsembleConfig, ResourceConfig, SearchConfig, StreamingConfig, ValidationConfig
from automl.exceptions import AutoMLError, ConfigError, DataError, IntegrityError, NotFittedError, SchemaError
from automl.metrics import METRICS, custom_metric
from automl.predictor import Predictor
from automl.profile import DataProfile

__all__ = [
    "AutoML",
    "load",
    "Predictor",
    "DataProfile",
    "SearchConfig",
    "ValidationConfig",
    "EnsembleConfig",
    "ResourceConfig",
    "StreamingConfig",
    "AutoMLError",
    "ConfigError",
    "DataError",
    "IntegrityError",
    "NotFittedError",
    "SchemaError",
    "METRICS",
    "custom_metric",
]
__version__ = "0.1.0"
