"""Editor seeds and request identity (shared by the driver, the editor pool and the sandbox).

Every edit gets its own seed, derived from where it comes from — never a shared constant. ``per_item`` derives it
from the sample id and the re-edit (response) index, so the n re-edits of one prompt draw different noise;
``per_group`` gives the whole prompt group one seed, so the re-edits differ only by their instruction (what the
improvement reward needs). The derivation is a hash, so a seed does not depend on batch composition, replica or
process.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from easyr1.config.editing import ImageEditConfig

    from .types import EditRequest

__all__ = ["SEED_BITS", "derive_seed", "edit_seed", "image_digest", "request_identity"]

SEED_BITS = 63
"""Seeds lie in ``[0, 2**63)`` (``torch.Generator.manual_seed`` takes them as they are)."""


def derive_seed(base_seed: int, *parts: object) -> int:
    """A deterministic seed from ``base_seed`` and identifying parts (strings, ints)."""
    text = "\x1f".join([str(int(base_seed)), *(str(p) for p in parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << SEED_BITS) - 1)


def edit_seed(cfg: ImageEditConfig, sample_id: str, reedit_index: int) -> int:
    """The seed of re-edit ``reedit_index`` of sample ``sample_id`` under ``cfg.seed_mode`` and ``cfg.base_seed``."""
    if cfg.seed_mode == "per_item":
        return derive_seed(cfg.base_seed, "item", sample_id, int(reedit_index))
    if cfg.seed_mode == "per_group":
        return derive_seed(cfg.base_seed, "group", sample_id)
    raise ValueError(f"worker.image_edit.seed_mode={cfg.seed_mode!r}: must be 'per_item' or 'per_group'")


def image_digest(image: Any) -> str:
    """SHA-256 of a PIL image's mode, size and pixel bytes."""
    h = hashlib.sha256()
    h.update(f"{image.mode}|{image.size[0]}x{image.size[1]}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def request_identity(request: EditRequest, *, include_metadata: bool = False) -> str:
    """What makes two requests the same edit: image pixels, instruction and seed (and metadata when the backend
    reads it, as the sandbox editor does). Identical requests are edited once by the pool."""
    h = hashlib.sha256()
    h.update(image_digest(request.image).encode())
    h.update(b"\x00" + request.instruction.encode("utf-8"))
    h.update(b"\x00" + str(int(request.seed)).encode())
    if include_metadata:
        h.update(b"\x00" + json.dumps(dict(request.metadata), sort_keys=True, default=repr).encode("utf-8"))
    return h.hexdigest()
