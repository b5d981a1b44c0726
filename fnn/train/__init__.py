"""Training: pure train/eval steps, TrainState, fit/evaluate/predict and callbacks."""

from fnn.train._callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    FitRun,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from fnn.train._checkpointing import BackupAndRestore, ModelCheckpoint
from fnn.train._evaluate import evaluate, place, predict
from fnn.train._fit import CPU_FUSE_MAX_FLOPS, History, fit
from fnn.train._state import TrainState
from fnn.train._step import make_eval_step, make_grad_fn, make_train_step

__all__ = [
    "BackupAndRestore",
    "ModelCheckpoint",
    "CPU_FUSE_MAX_FLOPS",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FitRun",
    "History",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "TrainState",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_grad_fn",
    "make_train_step",
    "place",
    "predict",
]
