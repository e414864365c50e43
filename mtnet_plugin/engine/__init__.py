"""mtnet_plugin.engine: training, multi-view testing, checkpoints, multigrid and distributed launch.

Public entry points: :func:`train`, :func:`run_test` (also :func:`test`, PySlowFast's name), :func:`launch`,
:func:`prepare_synthetic_data` and :func:`run` (what ``tools/run_net.py`` calls), :func:`setup_logging`.
"""
from .checkpoint import last_intact_checkpoint, load_checkpoint, save_checkpoint
from .distributed import launch
from .evaluate import run_test
from .logs import log_json_stats, setup_logging
from .lr_policy import get_lr_at_epoch
from .multigrid import MultigridSchedule
from .optim import construct_optimizer
from .runner import build_run_cfg, prepare_synthetic_data, run
from .trainer import Preempted, Trainer, TrainingDiverged, train

__all__ = [
    "MultigridSchedule",
    "Preempted",
    "Trainer",
    "TrainingDiverged",
    "build_run_cfg",
    "construct_optimizer",
    "get_lr_at_epoch",
    "last_intact_checkpoint",
    "launch",
    "load_checkpoint",
    "log_json_stats",
    "prepare_synthetic_data",
    "run",
    "save_checkpoint",
    "setup_logging",
    "run_test",
    "test",
    "train",
]

test = run_test  # PySlowFast's name (tools/test_net.py ``test(cfg)``); kept for scripts written against it
