"""easyr1: GRPO training of a vision-language model that repairs image edits.

The package is organised one folder per concern (data, models, algorithms, rollout, actor, editing, reward,
trainer, telemetry, sandbox); ``easyr1.config`` holds the typed configuration tree.
"""

__version__ = "0.1.0"
