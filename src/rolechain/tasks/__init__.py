"""The task registry: which tasks exist and which parameters each takes.

This package is pure (no boto3): it is used to validate chain files offline. The code that
runs each task lives in :mod:`rolechain.executor.tasks`.
"""

from rolechain.tasks.registry import TASKS, TaskInfo, task_names, validate_task_params

__all__ = ["TASKS", "TaskInfo", "task_names", "validate_task_params"]
