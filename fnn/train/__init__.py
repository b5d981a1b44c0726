"""Training: pure train/eval steps, TrainState, fit/evaluate/predict and callbacks."""

from fnn.train._callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from fnn.train._checkpointing import BackupAndRestore, ModelCheckpoint
from fnn.train._debug import NonFinite, find_non_finite
from fnn.train._ensemble import EnsembleHistory, fit_ensemble
from fnn.train._evaluate import evaluate, place, predict
from fnn.train._execution import CPU_FUSE_MAX_FLOPS, fused_steps
from fnn.train._fit import fit
from fnn.train._liveplot import LivePlot
from fnn.train._run import Carry, FitRun, History, Progress
from fnn.train._state import TrainState
from fnn.train._step import make_eval_step, make_grad_fn, make_train_step, make_train_step_from_loss
from fnn.train._tracking import CSVLogger
from fnn.train._watchdog import Watchdog

__all__ = [
    "BackupAndRestore",
    "ModelCheckpoint",
    "CPU_FUSE_MAX_FLOPS",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "EnsembleHistory",
    "NonFinite",
    "FitRun",
    "History",
    "LearningRateScheduler",
    "LivePlot",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "TrainState",
    "Watchdog",
    "Carry",
    "Progress",
    "fused_steps",
    "evaluate",
    "find_non_finite",
    "fit",
    "fit_ensemble",
    "make_eval_step",
    "make_grad_fn",
    "make_train_step",
    "make_train_step_from_loss",
    "place",
    "predict",
]
