"""Labelled text files of users' size: read in batches into memory-mapped Arrow, checked row by row,
cached by content, and prepared in far less memory than the file's texts as Python lists."""

from pathlib import Path

import pytest

from litforge.data.text.classification import TextDataModule
from litforge.utils.errors import UserError
from tests.data.text.memory_limit import prepare_within_limit

WORDS = "the film was good bad great dull long short moving boring acting plot".split()


def write_reviews(path: Path, rows: int, blank_text_at: int | None = None) -> Path:
    """A csv of reviews: `stars` is a number column whose first gap comes after the first 10,000
    rows (a float column there, an int one before), `label` names the sentiment."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,text,stars,label\n")
        for i in range(rows):
            good = i % 3 != 0
            text = " ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(4 + i % 9))
            text = "   " if i == blank_text_at else f"{'great' if good else 'dull'} {text}"
            stars = "" if i > 12_000 and i % 7 == 0 else str(4 if good else 1)
            f.write(f'{i},"{text}",{stars},{"positive" if good else "negative"}\n')
    return path


def datamodule(tmp_path: Path, train_file: Path, **kwargs: object) -> TextDataModule:
    settings = {"vocab_size": 200, "max_length": 16, "batch_size": 8, "data_dir": str(tmp_path / "data")}
    settings["tokenizer_dir"] = str(tmp_path / "tok")
    return TextDataModule(source="files", train_file=str(train_file), **{**settings, **kwargs})


def test_a_large_csv_is_memory_mapped_split_by_index_and_cached(tmp_path: Path) -> None:
    reviews = write_reviews(tmp_path / "reviews.csv", 25_000)
    dm = datamodule(tmp_path, reviews)
    dm.setup("fit")
    assert dm.id2label == ["negative", "positive"]
    assert len(dm.splits["train"]) + len(dm.splits["validation"]) == 22_500
    for role in ("train", "validation"):
        assert dm.splits[role].cache_files  # memory-mapped token files, not tables in memory
        assert dm.texts[role].cache_files and dm.texts[role]._indices is not None  # rows of the file's table
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["labels"].tolist()) <= {0, 1}
    tokens = sorted((tmp_path / "data" / "text_cache" / "tokens").glob("*.arrow"))
    again = datamodule(tmp_path, reviews)
    again.setup("fit")
    assert sorted((tmp_path / "data" / "text_cache" / "tokens").glob("*.arrow")) == tokens
    assert again.splits["train"]["labels"][:50] == dm.splits["train"]["labels"][:50]


def test_an_edited_file_at_the_same_path_is_read_again(tmp_path: Path) -> None:
    reviews = write_reviews(tmp_path / "reviews.csv", 300)
    datamodule(tmp_path, reviews).setup("fit")
    reviews.write_text(reviews.read_text().replace(",positive", ",upbeat"))
    edited = datamodule(tmp_path, reviews, tokenizer_dir=str(tmp_path / "tok2"))
    edited.setup("fit")
    assert edited.id2label == ["negative", "upbeat"]


def test_a_bad_row_deep_in_the_file_is_named_and_nothing_is_tokenised(tmp_path: Path) -> None:
    reviews = write_reviews(tmp_path / "reviews.csv", 25_000, blank_text_at=23_456)
    with pytest.raises(UserError) as err:
        datamodule(tmp_path, reviews).setup("fit")
    assert "1 of 25000 rows have an empty or non-text 'text'" in str(err.value)
    assert f"{reviews} line 23458" in str(err.value)  # the header is line 1, row 0 line 2
    assert not (tmp_path / "data" / "text_cache" / "tokens").exists() and not (tmp_path / "tok").exists()


@pytest.mark.slow
def test_a_labelled_file_larger_than_the_memory_limit_is_prepared(tmp_path: Path) -> None:
    """27 MB of labelled reviews prepared in 48 MB of memory above what the process holds at rest: its
    texts as a Python list alone take 41 MB, and pandas cannot read the file whole there."""
    small = write_reviews(tmp_path / "small.csv", 20_000)
    big = write_reviews(tmp_path / "big.csv", 400_000)
    settings = {"vocab_size": 300, "max_length": 32}
    target = "litforge.data.text.classification:TextDataModule"
    proc, sizes = prepare_within_limit(target, settings, (small, big), tmp_path / "data", 48)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sizes["splits"]["train"] + sizes["splits"]["validation"] == 360_000
    whole = "import pandas; pandas.read_csv(path)"
    frame, _ = prepare_within_limit(target, settings, (small, big), tmp_path / "frame", 48, instead=whole)
    assert frame.returncode != 0 and "MemoryError" in frame.stderr, "the limit must be too small for a DataFrame"
