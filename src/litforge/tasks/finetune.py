"""Fine-tuning controls shared by the tasks on a pretrained backbone (text and image classification):
the backbone frozen for the first epochs, and layer-wise learning-rate decay."""

import logging
import re
from typing import Any

from torch import nn

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# blocks are `<...>.stages.<i>.` (ResNet, ConvNeXt), else `<...>.layer.<i>.` / `<...>.layers.<i>.`
# (BERT, RoBERTa, DistilBERT, ViT, DINOv2, Swin)
STAGE_PATTERN = re.compile(r"\.stages\.(\d+)\.")
LAYER_PATTERN = re.compile(r"\.layers?\.(\d+)\.")
EMBEDDING_NAMES = ("embeddings", "embedder")


def check_layerwise_lr_decay(decay: float) -> None:
    if not 0 < decay <= 1:
        raise UserError(f"model.layerwise_lr_decay={decay}: give a factor in (0, 1]; 1 turns it off")


def block_index(name: str) -> int | None:
    """The block a parameter belongs to (its stage for staged vision models), None outside the blocks."""
    match = STAGE_PATTERN.search(name) or LAYER_PATTERN.search(name)
    return int(match.group(1)) if match else None


def layer_index(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for block i, num_layers + 1 for the head and the rest."""
    if any(part in name for part in EMBEDDING_NAMES):
        return 0
    block = block_index(name)
    return block + 1 if block is not None else num_layers + 1


def layerwise_lr_groups(model: nn.Module, lr: float, weight_decay: float, decay: float) -> list[dict[str, Any]]:
    """Optimiser groups whose learning rate shrinks by `decay` per block from the head down to
    the embeddings; biases and norm scales (1-d) are not decayed."""
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    blocks = [block_index(name) for name, _ in named]
    num_layers = 1 + max((b for b in blocks if b is not None), default=-1)
    groups: dict[tuple[int, bool], list] = {}
    for name, param in named:
        groups.setdefault((layer_index(name, num_layers), param.ndim > 1), []).append(param)
    return [
        {
            "params": params,
            "lr": lr * decay ** (num_layers + 1 - depth),
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (depth, decays), params in sorted(groups.items())
    ]


class BackboneFinetuning:
    """For a LightningModule whose `self.model` is a Hugging Face model (`base_model` the backbone under
    its head) and whose hyperparameters hold `freeze_backbone_epochs`, `layerwise_lr_decay` and `optimizer`:
    the head alone trains for the first `freeze_backbone_epochs` epochs; `layerwise_lr_decay` below 1
    gives each block `decay` times the learning rate of the block above it."""

    def backbone_module(self) -> nn.Module:
        return self.model.base_model

    def on_train_epoch_start(self) -> None:
        # parameters stay in the optimiser while frozen (no gradient, so no update): adding them
        # later as a new group (BaseFinetuning's way) would escape the warm-up schedule and LLRD
        epochs = self.hparams.get("freeze_backbone_epochs") or 0
        frozen = self.current_epoch < epochs
        if frozen or self.current_epoch == epochs > 0:
            log.info("epoch %d: backbone %s", self.current_epoch, "frozen" if frozen else "unfrozen")
        self.backbone_module().requires_grad_(not frozen)

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        decay = self.hparams.get("layerwise_lr_decay", 1.0)
        if decay == 1:
            return None
        optimizer = self.hparams.optimizer
        return layerwise_lr_groups(self.model, optimizer["lr"], optimizer.get("weight_decay", 0.0), decay)
