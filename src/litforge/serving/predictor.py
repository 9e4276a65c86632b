"""A checkpoint loaded once, predicting in-memory inputs with the records `litforge.predict` writes.

The batch comes from the data module's `predict_batch` (the encoding its `predict_dataloader` uses
for files), goes through the device transfer and the data module's `on_after_batch_transfer` as in
`trainer.predict`, and the task's own `predict_step` makes the records: one code path per task.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from litforge import assembly
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.config import require_file
from litforge.utils.errors import UserError

# the input each task predicts from, and the request field that holds a list of them
INPUT_KINDS = {
    "image_classification": "image",
    "text_classification": "text",
    "token_classification": "text",
    "masked_lm": "text",
    "regression": "rows",
    "tabular_classification": "rows",
}
FIELDS = {"image": "images", "text": "texts", "rows": "rows"}


def config_digest(config: dict[str, Any]) -> str:
    """The digest a training run logs of its config (callbacks/run_config.py), to match a model to its run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Predictor:
    """A task module and its data module rebuilt from a checkpoint, in eval mode on `device`.

    `predict` may be called from several threads: one forward pass runs at a time.
    """

    def __init__(self, model: Any, datamodule: Any, checkpoint: dict[str, Any], path: Path, device: str) -> None:
        self.model, self.datamodule, self.path, self.device = model, datamodule, path, device
        target = checkpoint["litforge"]["config"]["model"]["_target_"]
        self.task = target.rsplit(".", 2)[-2]
        if self.task not in INPUT_KINDS:
            raise UserError(f"ckpt_path={path}: {target} is not a task litforge serves ({', '.join(INPUT_KINDS)})")
        self.input_kind = INPUT_KINDS[self.task]
        self.field = FIELDS[self.input_kind]
        self.digest = config_digest(checkpoint["litforge"]["config"])
        self.forward_passes = 0
        self.items = 0
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path, trusted_modules: Iterable[str] = (), device: str = "cpu") -> Predictor:
        """Load `path` (a .ckpt written by litforge.train); `trusted_modules` as for litforge.predict."""
        import torch

        path = require_file(str(path), "checkpoint file", "ckpt_path")
        checkpoint = load_checkpoint(path, trusted_modules)
        try:
            torch.device(device)
        except RuntimeError as err:
            raise UserError(f"device={device!r}: not a torch device ({err}); give cpu, cuda, cuda:1 or mps") from err
        model = assembly.build_task(checkpoint)
        if not hasattr(model, "prediction_file"):
            raise UserError(f"ckpt_path={path}: {type(model).__name__} does not predict new inputs")
        datamodule = assembly.datamodule_from_checkpoint(checkpoint)
        if not hasattr(datamodule, "predict_batch"):
            raise UserError(f"ckpt_path={path}: {type(datamodule).__name__} cannot prepare in-memory inputs")
        model.eval().to(device)
        # the checks trainer.predict runs first (a tokenizer in the checkpoint, top_k)
        model.on_predict_start()
        return cls(model, datamodule, checkpoint, path, device)

    def validate(self, items: Sequence[Any]) -> None:
        """Refuse what no forward pass could take, naming the bad field (`images[2]`, `rows[0]`, ...)
        and what is valid; values a checkpoint's preprocessing refuses are found by `predict`."""
        if not isinstance(items, list | tuple) or not items:
            raise UserError(f"{self.field}: give a non-empty list of {self._one()}")
        for i, item in enumerate(items):
            if self.input_kind == "image":
                self._check_image(item, f"{self.field}[{i}]")
            elif self.input_kind == "rows" and not isinstance(item, dict):
                raise UserError(f"{self.field}[{i}]: give an object of column values, not a {type(item).__name__}")
        if self.task == "masked_lm":
            mask = self.datamodule.tokenizer.mask_token
            for i, item in enumerate(items):
                if isinstance(item, str) and mask not in item:
                    raise UserError(
                        f"texts[{i}]: {item[:80]!r} has no {mask}; put {mask} where a token should be predicted"
                    )

    def _one(self) -> str:
        return {
            "image": "images (encoded image files: PNG, JPEG, ...)",
            "text": "texts",
            "rows": "rows ({column: value} objects)",
        }[self.input_kind]

    @staticmethod
    def _check_image(item: Any, where: str) -> None:
        if isinstance(item, bytes | bytearray):
            if not item:
                raise UserError(f"{where}: empty; give the bytes of an image file (PNG, JPEG, ...)")
            return
        from PIL import Image

        if not isinstance(item, Image.Image):
            raise UserError(f"{where}: give an image file's bytes or a PIL image, not a {type(item).__name__}")

    def predict(
        self, items: Sequence[Any], top_k: int | None = None, ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The task's records for `items` (one each, in order), as litforge.predict writes them for the
        same inputs; a record's "id" is `ids[i]`, or the item's index "0", "1", ..."""
        import torch
        from lightning.pytorch.utilities import move_data_to_device

        self.validate(list(items))
        if ids is not None and len(ids) != len(items):
            raise UserError(f"ids: {len(ids)} given for {len(items)} {self.field}; give one per item or none")
        with self._lock:
            self.model.predict_top_k = top_k
            self.model.on_predict_start()
            batch = self.datamodule.predict_batch(list(items), ids)
            batch = self.datamodule.on_after_batch_transfer(move_data_to_device(batch, self.device), 0)
            with torch.inference_mode():
                records = self.model.predict_step(batch, 0)
            self.forward_passes += 1
            self.items += len(records)
        return records

    def labels(self) -> list[str]:
        """The class names, tags, or target columns the records name."""
        model = self.model
        for name in ("class_names", "id2label"):
            if getattr(model, name, None):
                return list(getattr(model, name))
        return list(model.hparams.get("target_names") or [])

    def metadata(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "input_kind": self.input_kind,
            "field": self.field,
            "labels": self.labels(),
            "input": self.datamodule.predict_schema(),
            "default_top_k": self.model.default_top_k,
            "config_digest": self.digest,
            "checkpoint": str(self.path),
        }
