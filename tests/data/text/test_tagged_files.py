"""Users' CoNLL files read into memory-mapped Arrow for NER: cached by content, re-read when edited,
refused at the bad line without a half-written cache, prepared within a memory limit smaller than
the file's sentences as Python lists."""

import json
from pathlib import Path

import pytest

from litforge.data.text.ner_corpus import generate_sentences, write_conll
from litforge.data.text.token_classification import TokenDataModule
from litforge.utils.errors import UserError
from tests.data.text.memory_limit import prepare_within_limit


def datamodule(train_file: Path, root: Path, name: str = "tok") -> TokenDataModule:
    dm = TokenDataModule(
        source="files",
        train_file=str(train_file),
        vocab_size=300,
        max_length=16,
        data_dir=str(root / "data"),
        tokenizer_dir=str(root / name),
    )
    dm.setup("fit")
    return dm


def arrow_files(root: Path) -> set[Path]:
    return set(root.rglob("*.arrow"))


def test_a_conll_file_is_memory_mapped_and_tokenised_once(tmp_path: Path) -> None:
    train_file = write_conll(generate_sentences(300, seed=2), tmp_path / "train.conll")
    dm = datamodule(train_file, tmp_path)
    for role in ("train", "validation"):
        assert dm.splits[role].cache_files and dm.sentences[role].cache_files, role
    assert len(dm.sentences["train"]) + len(dm.sentences["validation"]) + len(dm.sentences["test"]) == 300
    assert len(dm.splits["train"]) > len(dm.sentences["train"]), "max_length=16 cuts sentences into windows"
    lines = dm.sentences["validation"]["line"]
    assert min(lines) >= 3 and len(set(lines)) == len(lines), "each sentence keeps its first line"
    written = arrow_files(tmp_path / "data")
    again = datamodule(train_file, tmp_path, "tok2")
    assert arrow_files(tmp_path / "data") == written, "the second module reads every table from the cache"
    assert again.splits["train"]["input_ids"] == dm.splits["train"]["input_ids"]
    assert again.sentences["test"]["words"] == dm.sentences["test"]["words"], "the same split for the same seed"


def test_an_edited_file_at_the_same_path_is_read_again(tmp_path: Path) -> None:
    train_file = tmp_path / "train.conll"
    write_conll(generate_sentences(100, seed=1), train_file)
    first = datamodule(train_file, tmp_path)
    edited = generate_sentences(120, seed=5)
    write_conll(edited, train_file)
    second = datamodule(train_file, tmp_path, "tok2")
    words = [w for role in ("train", "validation", "test") for w in second.sentences[role]["words"]]
    assert sorted(map(tuple, words)) == sorted(tuple(s.words) for s in edited)
    assert len(second.splits["train"]) != len(first.splits["train"])


def test_a_bad_line_deep_in_the_file_is_named_and_nothing_is_cached(tmp_path: Path) -> None:
    lines = ["" if i % 5 == 4 else f"word{i % 7} O" for i in range(50_000)]
    lines[39_999] = "Paris B-LOC extra"  # line 40000: three columns where every other line has two
    bad = tmp_path / "big.conll"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{bad} line 40000: 3 columns where the file's first token line has 2"):
        datamodule(bad, tmp_path)
    cache = tmp_path / "data" / "text_cache"
    assert not [p for p in cache.rglob("*") if p.is_file() and p.name != ".prepare.lock"], "no table left behind"


def test_a_jsonl_file_in_bioes_becomes_iob2_and_an_unknown_tag_names_its_line(tmp_path: Path) -> None:
    rows = [{"tokens": ["Anna", "Berg", "visited", "Oslo"], "tags": ["B-PER", "E-PER", "O", "S-LOC"]}] * 40
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    val_file = tmp_path / "val.jsonl"
    val_file.write_text("\n" + json.dumps({"tokens": ["Rome"], "tags": ["S-MISC"]}) + "\n", encoding="utf-8")
    common = {"source": "files", "tag_scheme": "bioes", "vocab_size": 100, "data_dir": str(tmp_path / "data")}
    dm = TokenDataModule(train_file=str(train_file), tokenizer_dir=str(tmp_path / "tok"), **common)
    dm.setup("fit")
    assert dm.id2label == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert dm.sentences["train"][0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC"]
    with pytest.raises(UserError, match=rf"{val_file} line 2: tag 'B-MISC' \(as IOB2\) is not in the label list"):
        TokenDataModule(
            train_file=str(train_file), val_file=str(val_file), tokenizer_dir=str(tmp_path / "tok2"), **common
        ).setup("fit")


HEADROOM_MB = 24
SETTINGS = {"vocab_size": 500, "max_length": 32}
TARGET = "litforge.data.text.token_classification:TokenDataModule"


@pytest.mark.slow
def test_a_conll_file_larger_than_the_memory_limit_is_prepared(tmp_path: Path) -> None:
    """20 MB of CoNLL prepared in 24 MB of memory above what the process holds at rest, where the
    file's sentences as Python lists (the in-memory reader) run out of memory."""
    small = write_conll(generate_sentences(2_000, seed=0), tmp_path / "small.conll")
    big = write_conll(generate_sentences(240_000, seed=1), tmp_path / "big.conll")
    assert big.stat().st_size > 19_000_000
    proc, sizes = prepare_within_limit(TARGET, SETTINGS, (small, big), tmp_path / "data", HEADROOM_MB)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sizes["examples"]["train"] >= 0.75 * 240_000, sizes
    lists = "from litforge.data.text.conll import read_conll; read_conll(path)"
    listed, _ = prepare_within_limit(TARGET, SETTINGS, (small, big), tmp_path / "lists", HEADROOM_MB, instead=lists)
    assert listed.returncode != 0 and "MemoryError" in listed.stderr, "the limit must be too small for lists"
