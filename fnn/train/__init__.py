"""Training: pure train/eval steps (fit, callbacks and friends build on them)."""

from fnn.train._step import make_eval_step, make_train_step

__all__ = ["make_eval_step", "make_train_step"]
