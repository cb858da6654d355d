"""``easyr1 plan-memory``: per-GPU memory of the actor, rollout and editor pools from the model configs alone.

Pure arithmetic (no torch, no Ray, no weights): :mod:`.shapes` reads the configs, :mod:`.estimate` adds up what
each pool holds in each phase of its work, :mod:`.report` judges it against the GPU and says what to change.
"""

from .estimate import PoolEstimate, plan_actor, plan_editor, plan_rollout
from .report import MemoryPlan, Verdict, plan
from .shapes import EditorShape, ModelConfigUnavailable, PolicyShape, editor_shape, policy_shape

__all__ = [
    "EditorShape",
    "MemoryPlan",
    "ModelConfigUnavailable",
    "PolicyShape",
    "PoolEstimate",
    "Verdict",
    "editor_shape",
    "plan",
    "plan_actor",
    "plan_editor",
    "plan_rollout",
    "policy_shape",
]
