"""Build the configured editor: one in-process editor (inside a replica) or the Ray pool of them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .protocol import Editor

if TYPE_CHECKING:
    from easyr1.config.cluster import PoolPlacement
    from easyr1.config.editing import ImageEditConfig

    from .pool import EditorPool

logger = logging.getLogger(__name__)


def build_editor(image_edit_cfg: ImageEditConfig) -> Editor:
    """The editor of ``worker.image_edit.backend``, in this process (heavy imports happen here, lazily).

    ``qwen_image_edit`` → :class:`~easyr1.editing.qwen_image_edit.QwenImageEditEditor` loaded from ``model_path``;
    ``sandbox`` → the sandbox world's procedural ``SandboxEditor``.
    """
    backend = image_edit_cfg.backend
    if backend == "qwen_image_edit":
        from .qwen_image_edit import QwenImageEditEditor

        return QwenImageEditEditor.from_config(image_edit_cfg)
    if backend == "sandbox":
        from easyr1.sandbox.editor import SandboxEditor

        from_config = getattr(SandboxEditor, "from_config", None)
        return from_config(image_edit_cfg) if callable(from_config) else SandboxEditor()
    raise ValueError(f"worker.image_edit.backend={backend!r}: must be 'qwen_image_edit' or 'sandbox'")


def build_editor_pool(image_edit_cfg: ImageEditConfig, placement: PoolPlacement | None = None) -> EditorPool:
    """The Ray pool of ``worker.image_edit.num_replicas`` replicas placed by ``cluster.editor`` (Ray must run)."""
    from .pool import EditorPool

    return EditorPool.from_config(image_edit_cfg, placement)
