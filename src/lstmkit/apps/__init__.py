"""Applications built on lk.LSTM and the Trainer; each registers its ``lstmkit train`` task on import."""
from .errors import DataError
from .lstm_config import LSTMConfig

__all__ = ["DataError", "LSTMConfig"]

# Submodules the Trainer's registry imports to find `lstmkit train` tasks (lstmkit.train.registry).
TASK_MODULES = ["classify", "forecast", "text", "translate"]
