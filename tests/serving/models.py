"""Tiny models of every task, trained in-process once, and the inputs a client would send them,
beside the same inputs as files for litforge.predict."""

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.helpers import QUIET, TINY_BACKBONE, compose_config
from tests.user_files import houses_csv, weather_csv

TINY_TEXT = ["data.vocab_size=120", "data.max_length=24", "data.batch_size=8", *TINY_BACKBONE]
TRAIN = {
    "image_classification": ["data=digits", "model=image_classifier", "data.batch_size=128"],
    "text_classification": ["experiment=text_clf_offline", "data.num_examples=120", *TINY_TEXT],
    "token_classification": ["experiment=ner_offline", "data.num_sentences=60", *TINY_TEXT],
    "masked_lm": ["experiment=mlm_offline", "data.num_examples=120", *TINY_TEXT],
    "regression": [
        "data=tabular_file",
        "model=regressor",
        "data.target=price",
        "data.impute=mean",
        "data.categorical=[town]",
    ],
    "tabular_classification": [
        *("data=tabular_classification_file", "model=tabular_classifier", "data.target=rain_tomorrow"),
        "data.impute=mean",
    ],
}
ONE_EPOCH = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.num_sanity_val_steps=0", "test=false"]
ONE_EPOCH += ["callbacks.lr_monitor=null", "callbacks.early_stopping=null"]
TABLES = {"regression": houses_csv, "tabular_classification": weather_csv}


def train_model(task: str, root: Path) -> Path:
    """One epoch of `task` on tiny data, without testing; the last checkpoint's path."""
    from litforge.train import train

    overrides = [*TRAIN[task], *QUIET, *ONE_EPOCH]
    overrides.append(f"paths.data_dir={root / 'data'}")
    if task in TABLES:
        overrides.append(f"data.path={TABLES[task](root / 'train.csv', rows=60)}")
    cfg = compose_config(overrides, log_dir=root / "logs")
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def png_bytes(seed: int, size: tuple[int, int] = (20, 14), mode: str = "RGB") -> bytes:
    """An image of a size and mode training never saw, encoded as a PNG file."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


TEXTS = {
    "text_classification": ["the film was great and moving", "dull , slow and far too long"],
    "token_classification": ["Angela Merkel visited Paris on Monday .", "The bank in London hired John Smith"],
    "masked_lm": ["the film was [MASK] and moving", "a [MASK] story told [MASK]"],
}


def sample_inputs(task: str) -> list[Any]:
    """What a client sends: PNG bytes, texts or rows (a gap in one of them)."""
    if task == "image_classification":
        return [png_bytes(seed, size, mode) for seed, size, mode in ((0, (20, 14), "RGB"), (1, (8, 8), "L"))]
    if task in TEXTS:
        return TEXTS[task]
    if task == "regression":
        return [{"rooms": 3, "area": 80.5, "town": "town1"}, {"rooms": 1, "area": None, "town": "elsewhere"}]
    return [{"humidity": 81.0, "pressure": 1009.5, "wind": "N"}, {"humidity": None, "pressure": 1020.0, "wind": "E"}]


def write_inputs(task: str, items: list[Any], folder: Path) -> Path:
    """The same inputs as files litforge.predict reads; predictions come in file order."""
    folder.mkdir(parents=True)
    if task == "image_classification":
        for i, data in enumerate(items):
            (folder / f"{i}.png").write_bytes(data)
        return folder
    if task in TEXTS:
        path = folder / "texts.jsonl" if task == "token_classification" else folder / "texts.txt"
        lines = [json.dumps({"text": t}) for t in items] if task == "token_classification" else items
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    columns = list(items[0])
    rows = [",".join("" if row[c] is None else str(row[c]) for c in columns) for row in items]
    path = folder / "rows.csv"
    path.write_text("\n".join([",".join(columns), *rows]) + "\n", encoding="utf-8")
    return path


def file_predictions(checkpoint: Path, given: Path, log_dir: Path, *extra: str) -> list[dict[str, Any]]:
    """litforge.predict's records for `given`, run in-process."""
    from litforge.predict import predict
    from litforge.utils.checkpoint import load_checkpoint

    cfg = compose_config(
        ["extras=quiet", "trainer=cpu", f"ckpt_path={checkpoint}", f"input={given}", *extra], "predict", log_dir
    )
    return predict(cfg, checkpoint, load_checkpoint(checkpoint))


def close(got: Any, expected: Any, tolerance: float = 1e-5) -> bool:
    """Equal, floats to `tolerance` (files and memory may batch and pad differently), nested too."""
    if isinstance(expected, float) and isinstance(got, float | int):
        return abs(got - expected) <= tolerance
    if isinstance(expected, dict):
        return (
            isinstance(got, dict) and list(got) == list(expected) and all(close(got[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(close(g, e) for g, e in zip(got, expected, strict=True))
    return got == expected


def same_records(got: list[dict[str, Any]], expected: list[dict[str, Any]], ids: bool = False) -> None:
    """The records agree key by key; with `ids`, their ids too (an image file's id is its path, a
    text file's its line number, which a request has none of)."""
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert list(mine) == list(theirs), (mine, theirs)
        keys = [key for key in mine if ids or key != "id"]
        assert close({k: mine[k] for k in keys}, {k: theirs[k] for k in keys}), (mine, theirs)
