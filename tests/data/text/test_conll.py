"""CoNLL/jsonl readers, tag-scheme conversion, the generated NER corpus and sub-token alignment."""

import json
from pathlib import Path

import pytest

from litforge.data.text.conll import read_conll, read_jsonl, to_iob2
from litforge.data.text.ner_corpus import generate_sentences, write_conll
from litforge.data.text.token_align import IGNORE, align_labels, word_windows
from litforge.data.text.tokenizer import train_wordpiece
from litforge.utils.errors import UserError


def test_conll_reader_edge_cases(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects\tVBZ  B-VP\tO\n\n\n"
        "-DOCSTART- -X- -X- O\n"
        "Peter NNP B-NP B-PER\n  Blackburn NNP I-NP I-PER  \n\n\n\n"
    )
    path = tmp_path / "train.conll"
    path.write_text(text)
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert sentences[1].where.endswith("line 8")
    assert [s.tags for s in read_conll(path, token_column=0, tag_column=1)][0] == ["NNP", "VBZ"]


def test_conll_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_text("Paris B-LOC\nis O\n\nRome\n")
    with pytest.raises(UserError, match=r"bad\.conll line 4: 1 columns"):
        read_conll(path)
    with pytest.raises(UserError, match="data.tag_column=5"):
        read_conll(path, tag_column=5)


def test_jsonl_reader_refuses_unequal_lengths(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [{"tokens": ["Oslo", "is", "cold"], "tags": ["B-LOC", "O", "O"]}, {"tokens": ["Rome"], "tags": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(UserError, match=r"train\.jsonl line 2: .*equal length"):
        read_jsonl(path)
    path.write_text(json.dumps(rows[0]))
    assert read_jsonl(path)[0].tags == ["B-LOC", "O", "O"]


def test_schemes_convert_to_iob2() -> None:
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert to_iob2(iob1, "iob1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    bioes = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG"]
    assert to_iob2(bioes, "bioes") == ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG", "I-ORG"]
    assert to_iob2(["B-PER", "I-PER"], "iob2") == ["B-PER", "I-PER"]
    with pytest.raises(UserError, match=r"f\.conll line 3: tag 'S-PER' is not in the IOB2 scheme"):
        to_iob2(["O", "S-PER"], "iob2", "f.conll line 3")
    with pytest.raises(UserError, match="tag 'PER'"):
        to_iob2(["PER"], "bioes")


def test_generated_corpus_is_deterministic_and_valid_iob2(tmp_path: Path) -> None:
    first, again = generate_sentences(50, seed=3), generate_sentences(50, seed=3)
    assert first == again and first != generate_sentences(50, seed=4)
    kinds = {tag[2:] for s in first for tag in s.tags if tag != "O"}
    assert kinds == {"PER", "LOC", "ORG"}
    assert all(to_iob2(s.tags, "iob2") == s.tags for s in first)
    assert read_conll(write_conll(first, tmp_path / "ner.conll")) == [
        (s.words, s.tags, f"{tmp_path / 'ner.conll'} line {line}")
        for s, line in zip(first, _first_lines(first), strict=True)
    ]


def _first_lines(sentences: list) -> list[int]:
    lines, line = [], 3  # after "-DOCSTART-" and a blank line
    for sentence in sentences:
        lines.append(line)
        line += len(sentence.words) + 1
    return lines


def test_alignment_labels_the_first_sub_token_of_a_split_word() -> None:
    tokenizer = train_wordpiece(["Merkel met Obama", "Berlin is big"] * 20, 60, False, 32)
    encoded = tokenizer([["Merkelstein", "met", "Obama"]], is_split_into_words=True)
    word_ids = encoded.word_ids(0)
    assert word_ids.count(0) > 1, "the made-up name must split into several sub-tokens"
    assert word_ids.count(1) == word_ids.count(2) == 1, "words seen in training stay whole"
    tags = [1, 0, 1]  # B-PER O B-PER with id2label [O, B-PER, I-PER]
    inside = [0, 2, 2]
    labels, starts = align_labels(word_ids, tags, label_all=False, inside=inside)
    pieces = word_ids.count(0)
    assert labels == [IGNORE, 1, *[IGNORE] * (pieces - 1), 0, 1, IGNORE]
    assert sum(starts) == 3 and starts[1] == 1
    all_labels, _ = align_labels(word_ids, tags, label_all=True, inside=inside)
    assert all_labels[1 : 1 + pieces] == [1, *[2] * (pieces - 1)]


def test_word_windows_fit_the_budget() -> None:
    assert word_windows([1, 2, 1, 3, 1], budget=3) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert word_windows([5], budget=3) == [(0, 1)]
    assert word_windows([], budget=3) == []


def test_hub_loader_reads_class_label_tags(tmp_path: Path) -> None:
    """A local parquet folder stands in for the hub: the same load_dataset call and feature handling."""
    import datasets

    from litforge.data.text.tagged_arrow import iob2_sentences
    from litforge.data.text.token_classification_sources import load_hub

    features = datasets.Features(
        {
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-LOC", "I-LOC"])),
        }
    )
    rows = {"tokens": [["New", "York", "is", "big"], []], "ner_tags": [[1, 2, 0, 0], []]}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "hub" / "train.parquet"))
    splits = {"train": "train", "validation": None, "test": None}
    split = load_hub(str(tmp_path / "hub"), None, str(tmp_path / "cache"), splits, "tokens", "ner_tags")["train"]
    assert split.sentences.cache_files, "the hub's own memory-mapped table, not a copy in memory"
    sentences = iob2_sentences(split, "iob2", tmp_path / "text_cache")
    assert sentences["tags"] == [["B-LOC", "I-LOC", "O", "O"]] and sentences["words"] == [["New", "York", "is", "big"]]
    assert split.where(sentences["line"][0]).endswith("[train] row 0")
    with pytest.raises(UserError, match="data.val_split=dev: .* no such split"):
        load_hub(str(tmp_path / "hub"), None, str(tmp_path / "cache"), {"validation": "dev"}, "tokens", "ner_tags")
