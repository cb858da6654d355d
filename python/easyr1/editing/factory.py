"""Build the configured editor: one in-process editor (inside a replica) or the Ray pool of them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from easyr1.core.registries import EDITOR_BACKENDS

from .protocol import Editor

if TYPE_CHECKING:
    from easyr1.config.cluster import PoolPlacement
    from easyr1.config.editing import ImageEditConfig

    from .pool import EditorPool

logger = logging.getLogger(__name__)


def build_editor(image_edit_cfg: ImageEditConfig) -> Editor:
    """The editor of ``worker.image_edit.backend``, in this process (heavy imports happen here, lazily).

    The backend class comes from :data:`easyr1.core.registries.EDITOR_BACKENDS` (``qwen_image_edit`` →
    :class:`~easyr1.editing.qwen_image_edit.QwenImageEditEditor` loaded from ``model_path``; ``sandbox`` → the
    sandbox world's procedural ``SandboxEditor``), built with its ``from_config(image_edit_cfg)`` when it has one.
    The registry names the class by import string, so this package never imports the sandbox.
    """
    cls = EDITOR_BACKENDS.load(image_edit_cfg.backend)
    from_config = getattr(cls, "from_config", None)
    return from_config(image_edit_cfg) if callable(from_config) else cls()


def build_editor_pool(image_edit_cfg: ImageEditConfig, placement: PoolPlacement | None = None) -> EditorPool:
    """The Ray pool of ``worker.image_edit.num_replicas`` replicas placed by ``cluster.editor`` (Ray must run)."""
    from .pool import EditorPool

    return EditorPool.from_config(image_edit_cfg, placement)
