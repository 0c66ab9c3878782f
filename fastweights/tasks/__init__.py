"""Training tasks: data, loss and model-config completion, each behind the task protocol.

A task module defines a frozen `DataConfig` and a `TASK` object implementing
`fastweights.training.Task` (`name`, `dataset`, `loss`, `tokens_per_batch`; the protocol
also covers carried state and custom evaluations) plus `model_config(data, model, *,
prepare=True)`, which fills in the model's vocabulary sizes and read-out. No task imports
another; the text tasks share `materialised` (preparation, batching, the cache default).
Tasks and their named experiments are listed in one place, `fastweights.presets`.
"""
