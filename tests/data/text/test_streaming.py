"""Masked-LM training text streamed (data.streaming=true): trained and evaluated from the command
line, sharded across ranks and workers without overlap, resumed exactly where it stopped."""

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from litforge.data.text.masked_lm import MaskedLMDataModule
from litforge.data.text.mlm_stream import TextStream
from litforge.utils.errors import UserError
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
WORDS = "the of cat dog sat on mat log berlin paris capital country river film good bad".split()


def write_corpus(path: Path, lines: int) -> list[str]:
    """Numbered texts with a blank line after every fifth; returns the non-blank ones."""
    texts = [
        f"text {i} " + " ".join(WORDS[(i * k + k * k) % len(WORDS)] for k in range(3 + i % 7)) for i in range(lines)
    ]
    path.write_text("".join(t + "\n" + ("\n" if i % 5 == 0 else "") for i, t in enumerate(texts)), encoding="utf-8")
    return texts


def streaming(tmp_path: Path, corpus: Path, steps: int, *extra: str) -> list[str]:
    return [
        *QUIET,
        "data=mlm_text_file",
        "model=masked_lm",
        "data.streaming=true",
        f"data.train_file={corpus}",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.vocab_size=150",
        "data.max_length=24",
        "data.batch_size=8",
        "data.val_examples=40",
        "data.test_examples=40",
        "data.shuffle_buffer=64",
        *TINY_BACKBONE,
        f"trainer.max_steps={steps}",
        "~callbacks.save_figures",
        *extra,
    ]


def test_a_streamed_corpus_trains_validates_tests_and_evaluates(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 400)
    proc = run_cli(
        "litforge.train", streaming(tmp_path, corpus, 12, "trainer.val_check_interval=6"), tmp_path, env=ONE_THREAD
    )
    check_ok(proc)
    (run,) = run_dirs(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/loss", "test/loss", "test/perplexity"} <= set(metrics)
    assert "tokenised on the fly (80 held-out texts skipped)" in proc.stdout + proc.stderr
    assert not list((tmp_path / "data" / "mlm_cache" / "tokens").glob("train-*")), "nothing of training is cached"

    best = next((run / "checkpoints").glob("best_*.ckpt"))
    evaluated = run_cli("litforge.eval", [f"ckpt_path={best}", *QUIET, f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    check_ok(evaluated)
    (eval_run,) = run_dirs(tmp_path, "eval")
    tested = json.loads((eval_run / "metrics.json").read_text())["test/loss"]
    assert tested == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_ranks_and_workers_share_a_pass_without_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus.txt"
    texts = write_corpus(corpus, 203)
    held_out = 10 + 5
    dm = MaskedLMDataModule(
        source="files",
        train_file=str(corpus),
        vocab_size=150,
        max_length=24,
        line_by_line=True,
        streaming=True,
        val_examples=10,
        test_examples=5,
        shuffle_buffer=32,
        data_dir=str(tmp_path / "data"),
        tokenizer_dir=str(tmp_path / "tokenizer"),
    )
    dm.setup("fit")
    stream, training = dm.splits["train"], texts[held_out:]
    assert len(dm.splits["validation"]) == 10

    def ids(batch: list[str]) -> Counter:
        encoded = dm.tokenizer(batch, truncation=True, max_length=24)["input_ids"]
        return Counter(tuple(row) for row in encoded)

    seen: Counter = Counter()
    orders = []
    ranks, workers = 2, 2
    for rank in range(ranks):
        stream.rank, stream.world_size = rank, ranks
        for worker in range(workers):
            monkeypatch.setattr(
                torch.utils.data, "get_worker_info", lambda w=worker: SimpleNamespace(id=w, num_workers=2)
            )
            shard = rank * workers + worker
            mine = len(range(shard, len(training), ranks * workers))
            examples = iter(stream)
            first = [next(examples) for _ in range(mine)]
            assert {e["stream_worker"] for e in first} == {worker}
            assert [e["stream_produced"] for e in first] == list(range(1, mine + 1))
            seen += Counter(tuple(e["input_ids"]) for e in first)
            orders.append(([e["input_ids"] for e in first], [next(examples)["input_ids"] for _ in range(mine)]))
    assert seen == ids(training), "every training text exactly once in a pass"
    held = set(ids(texts[:held_out])) - set(ids(training))
    assert held and not held & set(seen), "no held-out text is trained on"
    assert any(first != second for first, second in orders), "the next pass is shuffled anew"

    # a shard told it had produced 7 examples goes on with its eighth, as the uninterrupted one
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1, num_workers=2))
    whole = iter(stream)
    expected = [next(whole)["input_ids"] for _ in range(12)]
    stream.start = [0, 7]
    resumed = iter(stream)
    assert [next(resumed)["input_ids"] for _ in range(5)] == expected[7:]


def test_a_resumed_stream_trains_on_the_batches_an_uninterrupted_run_does(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 300)
    steps = 8
    # a constant learning rate: a schedule's length would follow trainer.max_steps
    same = ["trainer.val_check_interval=4", "trainer.deterministic=true", "model.scheduler=null", "data.num_workers=2"]
    check_ok(
        run_cli("litforge.train", streaming(tmp_path, corpus, 2 * steps, *same), tmp_path / "whole", env=ONE_THREAD)
    )
    (whole,) = run_dirs(tmp_path / "whole")
    check_ok(run_cli("litforge.train", streaming(tmp_path, corpus, steps, *same), tmp_path / "parts", env=ONE_THREAD))
    (run,) = run_dirs(tmp_path / "parts")
    half = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    # each of the two workers made every other batch of 8 texts
    assert half["callbacks"]["LoaderPosition"]["produced"] == [steps // 2 * 8] * 2
    resumed = run_cli("litforge.train", [f"resume={run}", f"trainer.max_steps={2 * steps}"], tmp_path, env=ONE_THREAD)
    check_ok(resumed)

    ends = [torch.load(r / "checkpoints/last.ckpt", weights_only=True) for r in (whole, run)]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 2 * steps
    assert ends[0]["callbacks"]["LoaderPosition"] == ends[1]["callbacks"]["LoaderPosition"]
    for name, weight in ends[0]["state_dict"].items():
        assert torch.allclose(weight, ends[1]["state_dict"][name], atol=1e-6), name
    expected, got = (json.loads((r / "metrics.json").read_text()) for r in (whole, run))
    assert got["test/loss"] == pytest.approx(expected["test/loss"], rel=1e-5)


@pytest.mark.slow
def test_ddp_ranks_stream_their_own_shards(tmp_path: Path) -> None:
    """`trainer=ddp_sim`: both ranks build their stream, train in step and end together."""
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 300)
    overrides = streaming(tmp_path, corpus, 8, "trainer=ddp_sim", "trainer.val_check_interval=4")
    proc = run_cli("litforge.train", overrides, tmp_path, timeout=300, env=ONE_THREAD)
    check_ok(proc)
    out = proc.stdout + proc.stderr
    assert out.count("tokenised on the fly (80 held-out texts skipped)") >= 2, "each rank streams"
    (run,) = run_dirs(tmp_path)
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert saved["global_step"] == 8 and saved["callbacks"]["LoaderPosition"]["world_size"] == 2
    assert "test/loss" in json.loads((run / "metrics.json").read_text())


def test_a_table_file_streams_its_text_column_without_gaps(tmp_path: Path) -> None:
    csv = tmp_path / "posts.csv"
    csv.write_text('id,body\n1,"a post, with a comma"\n2,\n3,  \n4,second post\n5,third\n', encoding="utf-8")
    stream = TextStream(source="files", path=str(csv), text_column="body", cache_dir=str(tmp_path), skip=1)
    stream.check("data.train_file")
    assert stream.held_out(0, 1) == ["a post, with a comma"]
    assert [t for batch in stream.batches() for t in batch] == ["second post", "third"]
    assert sorted(stream.shuffled(0)) == ["second post", "third"]
    with pytest.raises(UserError, match=r"data.text_column=text: data.train_file has no such column; .*'body'"):
        TextStream(source="files", path=str(csv), cache_dir=str(tmp_path)).check("data.train_file")


def test_streaming_without_max_steps_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 20)
    overrides = [o for o in streaming(tmp_path, corpus, 1) if not o.startswith("trainer.max_steps")]
    proc = run_cli("litforge.train", overrides, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.streaming=true with trainer.max_steps=-1" in proc.stderr
    assert "trainer.max_steps=<steps>" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)
