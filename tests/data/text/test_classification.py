"""The text data module: sources, checks on the user's files, tokenizer, token cache, batches."""

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from litforge.data.text.classification import TextDataModule
from litforge.data.text.sentiment_corpus import generate_reviews
from litforge.utils.errors import UserError
from tests.helpers import QUIET, run_cli, run_dirs

TINY = {"vocab_size": 200, "max_length": 16, "batch_size": 8}


def datamodule(tmp_path: Path, **kwargs: Any) -> TextDataModule:
    settings = {
        "source": "generated",
        "num_examples": 200,
        "data_dir": str(tmp_path / "data"),
        "tokenizer_dir": str(tmp_path / "run" / "tokenizer"),
        **TINY,
        **kwargs,
    }
    return TextDataModule(**settings)


def write_csv(path: Path, rows: dict[str, list]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_generated_corpus_is_deterministic_and_balanced() -> None:
    first, again = generate_reviews(400, seed=3), generate_reviews(400, seed=3)
    assert first == again
    assert first != generate_reviews(400, seed=4)
    assert 150 < first["label"].count("positive") < 250


def test_generated_splits_batches_and_hand_over(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, val_fraction=0.1, test_fraction=0.2)
    dm.setup("fit")
    dm.setup("fit")  # idempotent: train.py and Lightning both call it
    assert (len(dm.splits["train"]), len(dm.splits["validation"])) == (140, 20)
    dm.setup("test")
    assert len(dm.splits["test"]) == 40
    kwargs = dm.model_kwargs()
    assert kwargs["id2label"] == ["negative", "positive"] and kwargs["num_labels"] == 2
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").is_file()  # a copy for the user
    assert json.loads(kwargs["tokenizer_files"]["tokenizer.json"])["model"]["type"] == "WordPiece"
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max() <= 16  # padded to the batch's longest only
    assert dm.state_dict() == {"id2label": ["negative", "positive"], "tokenizer_files": kwargs["tokenizer_files"]}


def test_group_by_length_batches_texts_of_similar_length(tmp_path: Path) -> None:
    def padded_widths(dm: TextDataModule) -> int:
        return sum(batch["input_ids"].numel() for batch in dm.train_dataloader())

    grouped, shuffled = datamodule(tmp_path, group_by_length=True), datamodule(tmp_path)
    grouped.setup("fit")
    shuffled.setup("fit")
    assert sum(len(b["labels"]) for b in grouped.train_dataloader()) == len(grouped.splits["train"])
    assert padded_widths(grouped) < padded_widths(shuffled)


def test_token_cache_is_reused_by_a_second_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    datamodule(tmp_path).setup("fit")
    cache = sorted((tmp_path / "data" / "text_cache" / "tokens").glob("*.arrow"))
    assert len(cache) == 2 and "cached to" in caplog.text
    stamps = [p.stat().st_mtime_ns for p in cache]
    caplog.clear()
    second = datamodule(tmp_path)
    second.setup("fit")
    assert "trained a WordPiece" not in caplog.text and caplog.text.count("from cache") == 3  # tokenizer + 2 splits
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    datamodule(tmp_path, max_length=12, tokenizer_dir=str(tmp_path / "run2" / "tokenizer")).setup("fit")
    assert len(list(cache[0].parent.glob("*.arrow"))) == 4  # another max_length, other tokens


def test_another_tokenizer_never_overwrites_a_saved_one(tmp_path: Path) -> None:
    datamodule(tmp_path).setup("fit")
    with pytest.raises(UserError, match="already holds another tokenizer"):
        datamodule(tmp_path, vocab_size=150).setup("fit")


def test_state_reloads_labels_and_tokenizer(tmp_path: Path) -> None:
    trained = datamodule(tmp_path)
    trained.setup("fit")
    evaluated = datamodule(tmp_path, tokenizer_dir=str(tmp_path / "elsewhere"))
    evaluated.load_state_dict(trained.state_dict())
    evaluated.setup("test")
    assert evaluated.model_kwargs() == trained.model_kwargs()
    assert not (tmp_path / "elsewhere").exists()


def test_files_with_pairs_int_labels_and_truncation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts = generate_reviews(60, seed=0)["text"]
    rows = [{"premise": t, "hypothesis": t[::-1], "label": i % 3 * 10} for i, t in enumerate(texts)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:50]))
    test_file = write_csv(tmp_path / "test.csv", pd.DataFrame(rows[50:]).to_dict("list"))
    caplog.set_level(logging.WARNING)
    dm = datamodule(
        tmp_path,
        source="files",
        train_file=str(tmp_path / "train.jsonl"),
        test_file=test_file,
        text_column="premise",
        text_pair_column="hypothesis",
        max_length=12,
    )
    dm.setup()
    assert dm.id2label == ["0", "10", "20"]  # integer labels in numeric order, kept as names
    assert (len(dm.splits["train"]), len(dm.splits["validation"]), len(dm.splits["test"])) == (45, 5, 10)
    assert "train split: " in caplog.text and "were truncated" in caplog.text
    batch = next(iter(dm.test_dataloader()))
    assert batch["token_type_ids"].max() == 1  # the second text of each pair


BAD = {
    "unknown column": (
        {"text": ["good", "bad"], "label": ["pos", "neg"]},
        None,
        ["data.text_column=review"],
        ["no column 'review'", "data.text_column", "['text', 'label']"],
    ),
    "unseen label": (
        {"text": ["good", "bad"], "label": ["pos", "neg"]},
        {"text": ["fine", "meh"], "label": ["pos", "neutral"]},
        [],
        ["test.csv", "['neutral']", "line 3", "['neg', 'pos']"],
    ),
    "empty text": (
        {"text": ["good", "  ", "bad"], "label": ["pos", "neg", "neg"]},
        None,
        [],
        ["train.csv", "line 3", "empty"],
    ),
    "missing label": (
        {"text": ["good", "bad", "ok"], "label": [1, None, 0]},
        None,
        [],
        ["train.csv", "no label", "line 3"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_in_process(case: str, tmp_path: Path) -> None:
    train, test, overrides, expected = BAD[case]
    kwargs = {key.split(".")[1]: value for key, value in (o.split("=") for o in overrides)}
    dm = datamodule(
        tmp_path,
        source="files",
        train_file=write_csv(tmp_path / "train.csv", train),
        test_file=write_csv(tmp_path / "test.csv", test) if test else None,
        **kwargs,
    )
    with pytest.raises(UserError) as err:
        dm.setup()
    for part in expected:
        assert part in str(err.value)
    assert not (tmp_path / "run").exists()


# one column and one label mistake end to end (each CLI run pays ~8 s of imports); all four above
@pytest.mark.parametrize("case", ["unknown column", "unseen label"])
def test_bad_files_exit_2_from_the_cli(case: str, tmp_path: Path) -> None:
    train, test, overrides, expected = BAD[case]
    files = [f"data.train_file={write_csv(tmp_path / 'train.csv', train)}"]
    if test:
        files.append(f"data.test_path={write_csv(tmp_path / 'test.csv', test)}")
    args = [
        "experiment=text_clf_offline",
        "data=text_file",
        *files,
        *overrides,
        *QUIET,
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    proc = run_cli("litforge.train", args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    for part in expected:
        assert part in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run_dirs(tmp_path) == []
