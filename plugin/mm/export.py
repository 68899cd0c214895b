"""Export a trained backbone as a plain ``state_dict`` for downstream use.

``rankssl export CHECKPOINT OUT.pth`` reads an mmengine checkpoint written by ``rankssl
train`` (safely: ``weights_only`` with mmengine's few plain-data types allow-listed, see
:mod:`rankssl.mm.checkpoint`) and writes only the backbone's tensors, under the names of the
network the backbone wraps:

- ``TorchvisionResNet``: torchvision's ResNet names (``conv1.weight``, ``layer1.0.bn1.running_mean``
  ...), so ``torchvision.models.resnet18().load_state_dict(sd, strict=False)`` loads every
  tensor and reports only ``fc.weight`` / ``fc.bias`` missing. A small-image stem
  (``small_stem=True``) or ``in_channels != 3`` gives a ``conv1.weight`` of another shape:
  replace the torchvision model's ``conv1`` (and ``maxpool`` by ``nn.Identity()``) first.
- ``mmpretrain.ResNet`` and every other backbone: its own ``state_dict`` names
  (``backbone.`` removed), e.g. for ``SmallCNN`` or ``mmpretrain.models.ResNet``.

The file is a plain ``dict[str, Tensor]`` written atomically; ``torch.load(OUT.pth)`` reads
it with torch's default ``weights_only=True``.

Example:
    >>> import torch
    >>> ckpt = {'state_dict': {'backbone.net.conv1.weight': torch.zeros(1), 'neck.w': torch.zeros(1)}}
    >>> sorted(backbone_state_dict(ckpt)[0])
    ['conv1.weight']
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from rankssl.mm.checkpoint import load_checkpoint_file, publish, temporary_path

__all__ = ["backbone_state_dict", "export_backbone"]

# (prefix in the algorithm's state_dict, what the stripped names are)
_WRAPPERS = (
    ("backbone.net.", "torchvision"),  # rankssl.models.TorchvisionResNet wraps a torchvision ResNet as .net
    ("backbone.", "backbone"),
)


def backbone_state_dict(checkpoint: dict) -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone's tensors of a checkpoint (an mmengine checkpoint dict or a bare state_dict).

    Returns ``(state_dict, layout)``: ``layout`` is ``'torchvision'`` when the names are
    torchvision's ResNet names, else ``'backbone'`` (the backbone module's own names).

    Raises:
        ValueError: the checkpoint has no ``backbone.*`` tensors (not a rankssl/mmpretrain
            algorithm's checkpoint).
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint: expected a dict with a 'state_dict', got {type(checkpoint).__name__}.")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}  # DDP-saved
    for prefix, layout in _WRAPPERS:
        picked = OrderedDict(
            (k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)
        )
        if picked:
            return picked, layout
    heads = sorted({k.split(".")[0] for k in state})
    raise ValueError(
        f"checkpoint: no backbone tensors (no 'backbone.*' keys; top-level modules: {heads}). "
        "Export reads checkpoints of rankssl's or mmpretrain's self-supervised algorithms."
    )


def export_backbone(checkpoint_path: str, out_path: str) -> str:
    """Write the backbone of ``checkpoint_path`` to ``out_path`` (a plain state_dict); returns a summary line.

    Example (shell): ``rankssl export work_dirs/groco/epoch_200.pth resnet18_groco.pth``, then
    ``torchvision.models.resnet18().load_state_dict(torch.load('resnet18_groco.pth'), strict=False)``.
    """
    if os.path.abspath(checkpoint_path) == os.path.abspath(out_path):
        raise ValueError(f"OUT ({out_path!r}) must differ from CHECKPOINT: export would overwrite the checkpoint.")
    state, layout = backbone_state_dict(load_checkpoint_file(checkpoint_path, map_location="cpu"))
    state = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state.items())
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    tmp = temporary_path(out_path)
    torch.save(state, tmp)
    publish(tmp, out_path)
    count = sum(v.numel() for v in state.values())
    if layout == "torchvision":
        how = (
            "torchvision ResNet names: torchvision.models.resnetNN().load_state_dict(torch.load(OUT), "
            "strict=False) (only fc.* missing)"
        )
        conv1 = state.get("conv1.weight")
        if conv1 is not None and tuple(conv1.shape[1:]) != (3, 7, 7):
            how += (
                f"; conv1 is {tuple(conv1.shape)} (small-image stem or other channels): set the torchvision "
                "model's conv1 (and maxpool = nn.Identity() for the small stem) to match first"
            )
    else:
        how = "the backbone module's own names (its load_state_dict reads them)"
    return f"wrote {len(state)} backbone tensors ({count:,} values) to {out_path}; {how}"
