"""Training: one loop (:mod:`.loop`) for every task (:mod:`.task`), a typed ``train`` section
(:mod:`.config`), and ``python train.py`` (:mod:`.cli`). See docs/training.md."""
from .cli import build_parser, main
from .config import TrainConfig, TrainingError, check_keys, lr_lambda
from .loop import Loop, TrainState
from .task import TASKS, Parts, Task, task_class

__all__ = ["TASKS", "Loop", "Parts", "Task", "TrainConfig", "TrainState", "TrainingError", "build_parser", "check_keys",
           "lr_lambda", "main", "task_class"]
