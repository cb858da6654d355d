"""Image editing: the ``Editor`` protocol, the Qwen-Image-Edit editor, the Ray editor pool and seed helpers.

Heavy dependencies (torch, diffusers, ray) are imported only by the modules that need them.
"""

from easyr1.core.seeds import derive_seed, edit_seed, request_identity
from easyr1.core.types import EditRequest, EditResult

from .factory import build_editor, build_editor_pool
from .protocol import Editor

__all__ = [
    "EditRequest",
    "EditResult",
    "Editor",
    "build_editor",
    "build_editor_pool",
    "derive_seed",
    "edit_seed",
    "request_identity",
]
