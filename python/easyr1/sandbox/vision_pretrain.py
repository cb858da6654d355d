"""Vision pretraining for the tiny sandbox policy: the sandbox's stand-in for a pretrained ViT.

A real Qwen-VL policy ships a vision tower that already knows where things are in a picture; the tiny policy's
tower is random, and the object's side comes out of it as a small perturbation of two of four merged tokens
(docs/performance.md, issue 18). This step trains **only** the policy's vision tower (``model.visual``, merger
included) on freshly rendered sandbox scenes with labels that describe the rendered picture — each plain object
kind's horizontal bucket (absent/left/middle/right) and the exposure — through small linear heads that are thrown
away afterwards. The position head sits on *every* merged token and on their mean, with unit-norm rows, so the
object's place must become a large, global feature of each token (as the exposure already is), not a detail of
one token. The vision tower runs exactly as in the policy: the images go through the data pipeline's pixel fit
and the policy's own processor, and the merged tokens come from the model's ``get_image_features``.

The scenes come from their own random stream (:data:`PRETRAIN_SPLIT` in the stream key, see :func:`scene_rng`),
never from the training or validation rows (whose streams are keyed ``train``/``val``); their labels are scene
content only, never a row's defect or repair.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .render import render_scene
from .scene import COLORS, MOVABLE_KINDS, SETTINGS, SIDES, Scene, SceneObject, opposite

log = logging.getLogger(__name__)

PRETRAIN_SPLIT = "vision-pretrain"
"""Split name in the pretraining scenes' stream key; the row generator uses ``train``, ``val`` and ``corpus``."""
HELD_OUT_SPLIT = "vision-pretrain-eval"
"""Stream of the scenes the position accuracy is measured on (never trained on)."""
BUCKETS = ("left", "middle", "right")
"""Thirds of the width a plain object (:data:`~easyr1.sandbox.scene.MOVABLE_KINDS`) can stand in; the label of a
scene says, per bucket, whether a plain object stands there."""
LEFT_OF, RIGHT_OF = 0.4, 0.6
"""Bucket edges (fraction of the width): ``x < 0.4`` left, ``x > 0.6`` right, else middle."""


def scene_rng(seed: int, index: int, split: str = PRETRAIN_SPLIT) -> random.Random:
    """The random stream of pretraining scene ``index``: keyed like the row generator's (``easyr1-sandbox:SPLIT:
    SEED:INDEX``) with a split name the generator never writes, so no pretraining scene shares a stream with a
    training or validation row."""
    if split in ("train", "val", "corpus"):
        raise ValueError(f"split {split!r} is a row generator split; pretraining scenes need their own stream")
    return random.Random(f"easyr1-sandbox:{split}:{seed}:{index}")


def pretrain_scene(seed: int, index: int, split: str = PRETRAIN_SPLIT) -> Scene:
    """A daytime sandbox scene with a tree (usually), one or two plain objects anywhere across the width, and an
    exposure between 0.25 and 1.1 half of the time (1 otherwise)."""
    rng = scene_rng(seed, index, split)
    sun_side = rng.choice(SIDES)
    scene = Scene(seed=rng.randrange(2**31), setting=rng.choice(SETTINGS), sun_side=sun_side)
    if rng.random() < 0.8:
        scene.objects.append(SceneObject("tree", "green", round(rng.uniform(0.05, 0.95), 3), shadow=opposite(sun_side)))
    n = 1 if rng.random() < 0.7 else 2
    for kind, color in zip(rng.sample(MOVABLE_KINDS, n), rng.sample(COLORS, n), strict=True):
        scene.objects.append(SceneObject(kind, color, round(rng.uniform(0.08, 0.92), 3), shadow=opposite(sun_side)))
    if rng.random() < 0.5:
        scene.light = round(rng.uniform(0.25, 1.1), 3)
    return scene


def position_labels(scene: Scene) -> list[float]:
    """Per bucket of :data:`BUCKETS`: 1.0 if a plain object stands in it, else 0.0."""
    labels = [0.0] * len(BUCKETS)
    for obj in scene.all_of(MOVABLE_KINDS):
        labels[0 if obj.x < LEFT_OF else 2 if obj.x > RIGHT_OF else 1] = 1.0
    return labels


@dataclass
class SceneBatch:
    """Rendered scenes as the policy's vision inputs, with their labels."""

    pixel_values: Any
    """Processor patches of all images, image after image."""
    grid_thw: Any
    """``(images, 3)`` patch grid per image."""
    offsets: list[int]
    """Start row of each image in :attr:`pixel_values` (plus the end)."""
    positions: Any
    """``(images, buckets)`` occupancy labels (:func:`position_labels`)."""
    light: Any
    """``(images,)`` exposure (``Scene.light``)."""

    def take(self, index: list[int]) -> tuple[Any, Any]:
        """Pixel values and grid of the images ``index``, in that order."""
        import torch

        rows = torch.cat([torch.arange(self.offsets[i], self.offsets[i + 1]) for i in index])
        return self.pixel_values[rows], self.grid_thw[index]


def encode_scenes(processor: Any, scenes: list[Scene], image_size: int, image_options: Any = None) -> SceneBatch:
    """Render ``scenes`` at ``image_size`` px, fit them like the data pipeline (``image_options``, an
    :class:`~easyr1.data.images.ImageOptions`; default the data defaults) and run the policy's image processor."""
    import torch

    from ..data.images import ImageOptions, fit_pixels

    options = image_options or ImageOptions()
    images = [fit_pixels(render_scene(s, image_size), options) for s in scenes]
    out = processor.image_processor(images=images, return_tensors="pt")
    grid = out["image_grid_thw"]
    sizes = grid.prod(-1).tolist()
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + int(n))
    return SceneBatch(
        pixel_values=out["pixel_values"],
        grid_thw=grid,
        offsets=offsets,
        positions=torch.tensor([position_labels(s) for s in scenes], dtype=torch.float32),
        light=torch.tensor([s.light for s in scenes], dtype=torch.float32),
    )


def merged_tokens(model: Any, pixel_values: Any, grid_thw: Any) -> list[Any]:
    """The merged vision tokens per image, as the policy's language model receives them."""
    out = model.model.get_image_features(pixel_values, image_grid_thw=grid_thw)
    feats = getattr(out, "pooler_output", None)
    if feats is None:  # a family returning a plain tuple (tokens per image, …)
        feats = out[0]
    return list(feats)


class _Heads:
    """Throw-away linear heads: position (shared by every token and the mean token) and exposure (mean token).
    Rows are normalised, so a confident answer needs a feature that is large in the token itself."""

    def __init__(self, dim: int, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.position = torch.nn.Parameter(torch.randn(len(BUCKETS), dim, generator=g))
        self.position_bias = torch.nn.Parameter(torch.zeros(len(BUCKETS)))
        self.light = torch.nn.Parameter(torch.randn(dim, generator=g))
        self.light_bias = torch.nn.Parameter(torch.zeros(1))

    def parameters(self) -> list[Any]:
        return [self.position, self.position_bias, self.light, self.light_bias]

    def position_logits(self, x: Any) -> Any:
        """``(..., dim)`` → ``(..., buckets)`` occupancy logits."""
        import torch

        return x @ torch.nn.functional.normalize(self.position, dim=-1).T + self.position_bias

    def light_pred(self, x: Any) -> Any:
        import torch

        return x @ torch.nn.functional.normalize(self.light, dim=0) + self.light_bias


def _losses(heads: _Heads, tokens: list[Any], positions: Any, light: Any) -> dict[str, Any]:
    """The loss terms of one batch: occupancy on every merged token, occupancy on their mean, exposure."""
    import torch
    import torch.nn.functional as F

    per_token = torch.cat([heads.position_logits(t) for t in tokens])
    token_labels = torch.cat([positions[i].expand(len(t), -1) for i, t in enumerate(tokens)])
    mean = torch.stack([t.mean(0) for t in tokens])
    return {
        "token": F.binary_cross_entropy_with_logits(per_token, token_labels),
        "mean": F.binary_cross_entropy_with_logits(heads.position_logits(mean), positions),
        "light": F.mse_loss(heads.light_pred(mean), light),
    }


def position_accuracy(logits: Any, positions: Any) -> float:
    """Over the images with exactly one plain object: share whose most likely occupied bucket is its bucket."""
    single = positions.sum(-1) == 1
    right = (logits.argmax(-1) == positions.argmax(-1)) & single
    return float(right.sum()) / max(1, int(single.sum()))


@dataclass
class VisionPretrainReport:
    """What :func:`pretrain_vision_tower` did."""

    steps: int
    seconds: float
    loss_first: float
    loss_last: float
    held_out_position_accuracy: float
    """Mean-token head on the one-object scenes of :data:`HELD_OUT_SPLIT` (chance ≈ 0.38, the larger bucket)."""
    held_out_token_position_accuracy: float
    """The same with every merged token's own answer."""
    vision_params: int


def pretrain_vision_tower(
    model_dir: str | Path,
    steps: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    image_options: Any = None,
    batch_size: int = 32,
    lr: float = 2.0e-3,
    pool: int = 1024,
    held_out: int = 128,
) -> VisionPretrainReport:
    """Train the vision tower of the policy in ``model_dir`` for ``steps`` steps on a pool of ``pool`` rendered
    pretraining scenes and save the policy back into ``model_dir`` (``save_pretrained``; only vision-tower weights
    change). Returns the report, with the position accuracy on ``held_out`` scenes of a separate stream."""
    import torch

    from ..models.loading import load_policy

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    t0 = time.perf_counter()
    loaded = load_policy(model_dir, dtype="float32", attn_implementation="sdpa")
    model, processor = loaded.model, loaded.processor
    visual = model.model.visual
    for p in model.parameters():
        p.requires_grad_(False)
    vision_params = [p for p in visual.parameters()]
    for p in vision_params:
        p.requires_grad_(True)
    train = encode_scenes(processor, [pretrain_scene(seed, i) for i in range(pool)], image_size, image_options)
    test_scenes = [pretrain_scene(seed, i, HELD_OUT_SPLIT) for i in range(held_out)]
    test = encode_scenes(processor, test_scenes, image_size, image_options)
    dim = merged_tokens(model, *train.take([0]))[0].shape[-1]
    heads = _Heads(dim, seed)
    opt = torch.optim.AdamW([*vision_params, *heads.parameters()], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        index = torch.randint(0, pool, (batch_size,), generator=gen).tolist()
        tokens = merged_tokens(model, *train.take(index))
        terms = _losses(heads, tokens, train.positions[index], train.light[index])
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vision_params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            parts = " ".join(f"{k} {float(v.detach()):.4f}" for k, v in terms.items())
            log.info("vision pretraining step %d/%d: loss %.4f (%s)", step + 1, steps, losses[-1], parts)
    model.eval()
    with torch.no_grad():
        tokens = merged_tokens(model, test.pixel_values, test.grid_thw)
        mean_acc = position_accuracy(heads.position_logits(torch.stack([t.mean(0) for t in tokens])), test.positions)
        per_token = [heads.position_logits(t) for t in tokens]
        token_acc = sum(position_accuracy(lg, test.positions[i].expand(len(lg), -1)) for i, lg in enumerate(per_token))
        token_acc /= len(per_token)
    for p in model.parameters():
        p.requires_grad_(True)
    model.save_pretrained(model_dir)
    report = VisionPretrainReport(
        steps=steps,
        seconds=round(time.perf_counter() - t0, 2),
        loss_first=round(losses[0], 4),
        loss_last=round(sum(losses[-10:]) / len(losses[-10:]), 4),
        held_out_position_accuracy=round(mean_acc, 4),
        held_out_token_position_accuracy=round(token_acc, 4),
        vision_params=sum(p.numel() for p in vision_params),
    )
    log.info("vision pretraining of %s: %s", model_dir, report)
    return report
