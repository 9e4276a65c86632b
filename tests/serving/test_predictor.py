"""The in-memory predictor gives the records litforge.predict writes for the same inputs, for every task."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from litforge.callbacks.run_config import StoreRunConfig
from litforge.serving.predictor import Predictor
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.errors import UserError
from tests.serving.models import TRAIN, same_records, sample_inputs

TASKS = sorted(TRAIN)
CLASSIFIERS = ["image_classification", "masked_lm", "tabular_classification", "text_classification"]


@pytest.mark.parametrize("task", TASKS)
def test_predictions_equal_those_of_litforge_predict_on_the_same_files(
    task: str, checkpoint_of: Callable[[str], Path], expected_of: Callable[..., list[dict[str, Any]]]
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of(task))
    records = predictor.predict(sample_inputs(task))
    same_records(records, expected_of(task))
    assert [r["id"] for r in records] == ["0", "1"]
    # one forward pass for the list, named by the caller's ids where given
    assert predictor.forward_passes == 1
    assert [r["id"] for r in predictor.predict(sample_inputs(task), ids=["a", "b"])] == ["a", "b"]


@pytest.mark.parametrize("task", CLASSIFIERS)
def test_top_k_lists_as_many_candidates_as_litforge_predict(
    task: str, checkpoint_of: Callable[[str], Path], expected_of: Callable[..., list[dict[str, Any]]]
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of(task))
    same_records(predictor.predict(sample_inputs(task), top_k=1), expected_of(task, 1))
    with pytest.raises(UserError, match="top_k=0"):
        predictor.predict(sample_inputs(task), top_k=0)


def test_metadata_names_the_task_its_inputs_and_the_run(checkpoint_of: Callable[[str], Path]) -> None:
    path = checkpoint_of("tabular_classification")
    meta = Predictor.from_checkpoint(path).metadata()
    assert meta["task"] == "tabular_classification" and meta["input_kind"] == "rows" and meta["labels"] == ["No", "Yes"]
    columns = meta["input"]["columns"]
    assert columns["humidity"] == columns["pressure"] == {"type": "number"}
    assert columns["wind"] == {"type": "category", "values": ["E", "N", "S", "W"]}
    # the digest the training run logged of its config
    assert meta["config_digest"] == StoreRunConfig(load_checkpoint(path)["litforge"]["config"]).digest
    assert meta["checkpoint"] == str(path)
    image = Predictor.from_checkpoint(checkpoint_of("image_classification")).metadata()
    assert image["input"] == {"mode": "L", "height": 8, "width": 8} and image["labels"] == [str(d) for d in range(10)]
    mlm = Predictor.from_checkpoint(checkpoint_of("masked_lm")).metadata()
    assert mlm["input"]["mask_token"] == "[MASK]" and mlm["field"] == "texts"


BAD_ITEMS = [
    ("image_classification", [b"\x89PNG not really"], r"images\[0\]: not a readable image"),
    ("image_classification", ["a path?"], r"images\[0\]: give an image file's bytes"),
    ("text_classification", ["fine", "  "], r"texts\[1\] is an empty text"),
    ("token_classification", [["Paris", 3]], r"texts\[0\]: give a text with at least one word"),
    ("masked_lm", ["no mask at all"], r"texts\[0\]: 'no mask at all' has no \[MASK\]"),
    ("masked_lm", ["a [MASK] " + "word " * 40, "late " * 40 + "[MASK]"], r"texts\[1\]: .* only after the first 24"),
    ("regression", [{"rooms": 2, "town": "town0"}], r"rows\[0\] lacks the column\(s\) \['area'\]"),
    ("regression", [{"rooms": 2, "area": 3.0, "town": "x"}, {"rooms": "two", "area": 1, "town": "x"}], r"rows\[1\]"),
    ("tabular_classification", [[81.0, 1009.5, "N"]], r"rows\[0\]: give an object of column values"),
    ("tabular_classification", [], r"rows: give a non-empty list"),
]


@pytest.mark.parametrize(("task", "items", "message"), BAD_ITEMS)
def test_bad_items_are_refused_naming_the_item_and_what_is_valid(
    task: str, items: list[Any], message: str, checkpoint_of: Callable[[str], Path]
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_of(task))
    with pytest.raises(UserError, match=message):
        predictor.predict(items)
    assert predictor.forward_passes == 0


def test_a_missing_checkpoint_or_device_is_a_user_error(tmp_path: Path, checkpoint_of: Callable[[str], Path]) -> None:
    with pytest.raises(UserError, match="ckpt_path=.*no such checkpoint file"):
        Predictor.from_checkpoint(tmp_path / "none.ckpt")
    with pytest.raises(UserError, match="device='gpu0'"):
        Predictor.from_checkpoint(checkpoint_of("regression"), device="gpu0")
