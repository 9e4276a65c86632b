"""Corpora read into memory-mapped Arrow: the user's .txt/csv/jsonl files with gaps, cached by
content, prepared within a memory limit smaller than the corpus, and by one process of many."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from litforge.data.text.corpus import read_corpus, select_rows
from litforge.data.text.masked_lm import MaskedLMDataModule
from litforge.utils.errors import UserError
from tests.data.text.memory_limit import prepare_within_limit
from tests.helpers import TINY_BACKBONE, run_cli


def test_text_csv_and_jsonl_files_keep_their_non_blank_texts(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    txt = tmp_path / "notes.txt"
    txt.write_text("first line\r\n\n   \nsecond line\nthird\n", encoding="utf-8")
    assert read_corpus(str(txt), "data.train_file", "text", cache)["text"] == ["first line", "second line", "third"]
    csv = tmp_path / "posts.csv"
    csv.write_text('id,body,score\n1,"a post, with a comma",3\n2,,4\n3,  ,1\n4,last post,2\n', encoding="utf-8")
    assert read_corpus(str(csv), "data.train_file", "body", cache)["text"] == ["a post, with a comma", "last post"]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [{"text": "one doc"}, {"text": None}, {"text": "two"}]) + "\n")
    assert read_corpus(str(jsonl), "data.val_file", "text", cache)["text"] == ["one doc", "two"]
    with pytest.raises(UserError, match=r"data.text_column=text: .*posts.csv has no such column; .*'body'"):
        read_corpus(str(csv), "data.train_file", "text", cache)


def test_a_changed_file_is_read_again_and_bad_files_are_named(tmp_path: Path) -> None:
    cache, txt = tmp_path / "cache", tmp_path / "corpus.txt"
    txt.write_text("old text\n")
    assert read_corpus(str(txt), "data.train_file", "text", cache)["text"] == ["old text"]
    txt.write_text("new text\nmore\n")  # the same path, new content: not the cached table
    assert read_corpus(str(txt), "data.train_file", "text", cache)["text"] == ["new text", "more"]
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.txt: not a UTF-8 text file"):
        read_corpus(str(latin), "data.train_file", "text", cache)
    assert not list((cache / "corpora").glob(".*")), "no half-written table is left behind"
    with pytest.raises(UserError, match=r"data.train_file=.*missing.txt: no such file"):
        read_corpus(str(tmp_path / "missing.txt"), "data.train_file", "text", cache)


def test_tokens_and_fixed_masks_do_not_depend_on_num_proc(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a corpus about cats and dogs and more\n" for i in range(4000)))
    splits = []
    for num_proc, line_by_line in ((1, True), (2, True), (1, False), (2, False)):
        dm = MaskedLMDataModule(
            source="files",
            train_file=str(corpus),
            vocab_size=200,
            max_length=32,
            line_by_line=line_by_line,
            num_proc=num_proc,
            data_dir=str(tmp_path / "data"),
            tokenizer_dir=str(tmp_path / f"tok{num_proc}{line_by_line}"),
        )
        dm.setup("fit")
        splits.append((list(dm.splits["train"]["input_ids"]), list(dm.splits["validation"]["labels"])))
    assert splits[0] == splits[1]  # one example a line: the same ids and validation masks
    # blocks: the same token stream, cut where each process' batches end
    streams = [[i for ids in train for i in ids[1:-1]] for train, _ in splits[2:]]
    assert streams[0] == streams[1] and len(streams[0]) > 30_000
    assert len(list((tmp_path / "data" / "mlm_cache" / "tokens").glob("train-*_of_00002.arrow"))) == 2


def write_corpus(path: Path, megabytes: int) -> None:
    """Lines of 6-17 words from a small vocabulary (a corpus' words repeat: its tokenizer's counts stay small)."""
    words = "the of cat dog sat on mat log berlin paris capital country river film good bad".split()
    with open(path, "w") as f:
        for i in range(megabytes * 1_000_000 // 60):
            f.write(" ".join(words[(i * k + k * k) % len(words)] for k in range(6 + i % 12)) + "\n")


@pytest.mark.slow
def test_a_corpus_larger_than_the_memory_limit_is_prepared(tmp_path: Path) -> None:
    """20 MB of text prepared in 16 MB of memory above what the process holds at rest: a Python list
    of its lines alone would take more."""
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    write_corpus(small, 1)
    write_corpus(big, 20)
    settings = {"vocab_size": 500, "max_length": 64}
    target = "litforge.data.text.masked_lm:MaskedLMDataModule"
    proc, sizes = prepare_within_limit(target, settings, (small, big), tmp_path / "data", 16)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sizes["examples"]["train"] >= 250_000


RACE = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from litforge.data.text.masked_lm import MaskedLMDataModule
    corpus, data_dir, tokenizer_dir = sys.argv[1:]
    dm = MaskedLMDataModule(source="files", train_file=corpus, vocab_size=300, max_length=32,
                            data_dir=data_dir, tokenizer_dir=tokenizer_dir)
    dm.setup("fit")
    print("train blocks", len(dm.splits["train"]))
    """
)


def test_processes_preparing_at_once_tokenise_once_and_agree(tmp_path: Path) -> None:
    """As DDP ranks started together by torchrun or SLURM do: one trains the tokenizer and tokenises,
    the others wait for it and read its cache."""
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 1)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(corpus), str(tmp_path / "data"), str(tmp_path / f"tok{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    log = "\n".join(outputs)
    assert log.count("trained a WordPiece tokenizer") == 1, log
    assert log.count("tokens tokenised") == 2, log  # train and validation (fit): once each
    assert log.count("tokens cached in") == 4, log
    assert "waiting for it, then reading its cache" in log
    assert len({line for line in log.splitlines() if line.startswith("train blocks")}) == 1


@pytest.mark.slow
def test_ddp_ranks_tokenise_a_users_corpus_once(tmp_path: Path) -> None:
    """`trainer=ddp_sim` on a .txt corpus: rank 0 trains the tokenizer and tokenises, rank 1 reads
    the cache, and both train on the same blocks."""
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 1)
    overrides = [
        "data=mlm_text_file",
        "model=masked_lm",
        f"data.train_file={corpus}",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.vocab_size=150",
        "data.max_length=24",
        "data.batch_size=64",
        *TINY_BACKBONE,
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "~callbacks.rich_progress_bar",
    ]
    proc = run_cli("litforge.train", overrides, tmp_path / "logs", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("trained a WordPiece tokenizer") == 1, out[-3000:]
    tokenised = [line for line in out.splitlines() if "tokens tokenised" in line]
    assert sorted(line.split(" split:")[0].split()[-1] for line in tokenised) == ["test", "train", "validation"]
    train_lines = {line.split("split: ")[1].split(", tokens")[0] for line in out.splitlines() if "train split:" in line}
    assert len(train_lines) == 1 and out.count("train split:") == 2, "both ranks read the same train blocks"
    (run,) = (tmp_path / "logs").glob("train/runs/*")
    assert "test/loss" in json.loads((run / "metrics.json").read_text())


def test_split_rows_are_an_index_file_onto_the_corpus(tmp_path: Path) -> None:
    import numpy as np

    txt = tmp_path / "corpus.txt"
    txt.write_text("".join(f"text {i}\n" for i in range(50)))
    table = read_corpus(str(txt), "data.train_file", "text", tmp_path / "cache")
    index = np.array([7, 3, 41, 0, 12])
    rows = select_rows(table, index)
    assert rows["text"] == ["text 7", "text 3", "text 41", "text 0", "text 12"] == table.select(index)["text"]
    (index_file,) = (tmp_path / "cache" / "corpora").glob("*-rows-*.arrow")
    assert select_rows(table, index)["text"] == rows["text"] and index_file.is_file()
    assert len(select_rows(table, np.array([1, 2]))) == 2
