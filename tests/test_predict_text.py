"""Predict and evaluate new files with text checkpoints as users do, from the checkpoint alone: each
model is trained once, its checkpoint copied elsewhere, and the run directory and the training data
deleted before any prediction or evaluation."""

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from seqeval.metrics import f1_score

from litforge.assembly import build_task
from litforge.data.text.conll import read_conll
from litforge.utils.checkpoint import load_checkpoint
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, run_cli, run_dirs
from tests.user_files import conll_file, corpus_txt, reviews_csv

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# litforge.predict has no callbacks to switch off
PREDICT_QUIET = ["extras=quiet"]
TINY_BERT = [
    "data.vocab_size=150",
    "data.max_length=24",
    "data.batch_size=16",
    *TINY_BACKBONE,
    "callbacks.lr_monitor=null",
]


# tiny models run faster on one thread than fighting other processes for a few shared cores
pytestmark = pytest.mark.usefixtures("one_thread")


def train_then_keep_only_the_checkpoint(root: Path, overrides: list[str], training_files: list[Path]) -> Path:
    """Train through the CLI; keep a copy of the best checkpoint and of hf_model under root/kept,
    then delete the run directory, the token cache and the training files."""
    logs = root / "logs"
    train = [*QUIET, *TINY_BERT, f"paths.data_dir={root / 'data'}", *overrides]
    check_ok(run_cli("litforge.train", train, logs, env=ONE_THREAD))
    (run,) = run_dirs(logs)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((run / "tokenizer").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    kept = root / "kept"
    kept.mkdir()
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    shutil.copy(best, kept / "model.ckpt")
    shutil.copytree(run / "hf_model", kept / "hf_model")
    shutil.rmtree(logs)
    shutil.rmtree(root / "data")
    for file in training_files:
        file.unlink()
    return kept / "model.ckpt"


def records(log_dir: Path, task_name: str) -> list[dict[str, Any]]:
    (run,) = run_dirs(log_dir, task_name)
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def numbered_reviews(path: Path, rows: int, seed: int) -> Path:
    """reviews_csv with the labels written as integers (negative 0, positive 1)."""
    table = reviews_csv(path, rows=rows, seed=seed).read_text()
    path.write_text(table.replace(",positive,", ",1,").replace(",negative,", ",0,"))
    return path


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text")
    train_file = numbered_reviews(root / "reviews.csv", rows=120, seed=0)
    overrides = ["experiment=text_clf_offline", "data=text_file", f"data.train_file={train_file}"]
    overrides += ["data.label_names=[negative,positive]", "trainer.max_epochs=2"]
    return train_then_keep_only_the_checkpoint(root, overrides, [train_file])


def argmax_labels(checkpoint_path: Path, texts: list[str]) -> list[str]:
    """The model's own forward pass on the texts, tokenised and cut as in training."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = build_task(checkpoint).eval()
    max_length = checkpoint["litforge"]["config"]["data"]["max_length"]
    batch = model.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        return [model.id2label[i] for i in model(batch).argmax(-1).tolist()]


def test_text_predictions_for_a_txt_and_a_csv_equal_the_models_forward_pass(
    text_checkpoint: Path, tmp_path: Path
) -> None:
    # a .txt through litforge.eval's predict.file: the same prediction path
    lines = tmp_path / "new.txt"
    lines.write_text("the film was great and moving\n\n" + "the acting was dull and slow " * 9 + "\n")
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={text_checkpoint}", f"predict.file={lines}"], tmp_path)
    check_ok(proc)
    assert '"label": ' in proc.stdout
    from_txt = records(tmp_path, "eval")
    texts = [line for line in lines.read_text().splitlines() if line]
    assert [r["id"] for r in from_txt] == ["1", "3"] and [r["text"] for r in from_txt] == texts
    assert [r["label"] for r in from_txt] == argmax_labels(text_checkpoint, texts)
    for record in from_txt:
        assert set(record["probs"]) == {"negative", "positive"}  # data.label_names named the 0/1 labels
        assert sum(record["probs"].values()) == pytest.approx(1, abs=1e-4)
        assert record["probability"] == max(record["probs"].values())

    # a csv of new rows without labels, through litforge.predict, the two most likely labels
    table = reviews_csv(tmp_path / "rows.csv", rows=7, seed=5)
    table.write_text("\n".join(line.rsplit(",", 2)[0] for line in table.read_text().splitlines()) + "\n")
    args = [*PREDICT_QUIET, f"ckpt_path={text_checkpoint}", f"input={table}", "top_k=1", "batch_size=3"]
    check_ok(run_cli("litforge.predict", args, tmp_path, env=ONE_THREAD))
    from_csv = records(tmp_path, "predict")
    assert [r["id"] for r in from_csv] == [str(row) for row in range(7)]  # data rows, as table predictions number them
    assert [r["label"] for r in from_csv] == argmax_labels(text_checkpoint, [r["text"] for r in from_csv])
    assert all(list(r["probs"]) == [r["label"]] for r in from_csv)


def test_text_eval_scores_every_row_of_a_new_labelled_file(text_checkpoint: Path, tmp_path: Path) -> None:
    labelled = numbered_reviews(tmp_path / "new.csv", rows=30, seed=3)
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={text_checkpoint}", f"data.test_path={labelled}"], tmp_path)
    check_ok(proc)
    assert f"test split: 30 examples from {labelled}" in proc.stdout + proc.stderr
    (run,) = run_dirs(tmp_path, "eval")
    metrics = json.loads((run / "metrics.json").read_text())
    rows = [line.split(",") for line in labelled.read_text().splitlines()[1:]]
    texts, gold = [row[1].strip('"') for row in rows], ["positive" if row[2] == "1" else "negative" for row in rows]
    predicted = argmax_labels(text_checkpoint, texts)
    assert metrics["test/acc"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold, strict=True)) / 30)

    # without data.test_path eval cuts the test split from the training file, which is gone
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={text_checkpoint}"], tmp_path / "gone")
    assert proc.returncode == 2 and "reviews.csv is gone" in proc.stderr and "data.test_path=" in proc.stderr


def test_the_exported_text_classifier_loads_in_a_transformers_pipeline(text_checkpoint: Path) -> None:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(text_checkpoint.parent / "hf_model"), device="cpu")
    texts = ["the film was great and funny", "the film was dull and awful"]
    assert [r["label"] for r in classify(texts)] == argmax_labels(text_checkpoint, texts)


@pytest.fixture(scope="module")
def ner_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ner")
    train_file = conll_file(root / "train.conll", sentences=80, seed=0)
    overrides = ["experiment=ner_offline", "data=conll_file", f"data.train_file={train_file}", "trainer.max_epochs=2"]
    return train_then_keep_only_the_checkpoint(root, overrides, [train_file])


def tags_of(record: dict[str, Any]) -> list[str]:
    """IOB2 tags of a record's words from its entity spans (word indices)."""
    tags = ["O"] * len(record["tokens"])
    for entity in record["entities"]:
        tags[entity["start"] : entity["end"]] = [f"B-{entity['type']}"] + [f"I-{entity['type']}"] * (
            entity["end"] - entity["start"] - 1
        )
    return tags


def test_ner_predictions_on_a_conll_file_reproduce_the_eval_f1(ner_checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    test_file = conll_file(inputs / "test.conll", sentences=30, seed=4)
    # and a sentence of 60 words, past data.max_length=24 sub-tokens: tagged in windows, scored whole
    long = ["Anna NNP B-PER", "Berg NNP I-PER", "visited VBD O", "Oslo NNP B-LOC", "and CC O", "Tom NNP B-PER"] * 10
    test_file.write_text(test_file.read_text() + "\n" + "\n".join(long) + "\n")
    (inputs / "texts.txt").write_text("Anna Berg visited Lima .\n\nTom Lee lives in Oslo, and likes it.\n")
    args = [*QUIET, f"ckpt_path={ner_checkpoint}", f"data.test_path={test_file}"]
    proc = run_cli("litforge.eval", args, tmp_path, env=ONE_THREAD)
    check_ok(proc)
    assert f"test split: 31 sentences from {test_file}" in proc.stdout + proc.stderr
    assert "test: 31 sentences became" in proc.stdout + proc.stderr  # the long one in windows
    (evaluated,) = run_dirs(tmp_path, "eval")
    f1 = json.loads((evaluated / "metrics.json").read_text())["test/f1"]
    assert "micro avg" in (evaluated / "entity_report.csv").read_text()

    check_ok(run_cli("litforge.predict", [*PREDICT_QUIET, f"ckpt_path={ner_checkpoint}", f"input={inputs}"], tmp_path))
    predicted = records(tmp_path, "predict")
    conll = [r for r in predicted if r["id"].startswith(str(test_file))]
    sentences = read_conll(test_file)
    assert [r["tokens"] for r in conll] == [s.words for s in sentences]  # the file's own words, not re-split
    assert [r["id"] for r in conll] == [f"{test_file}:{s.where.rpartition(' line ')[2]}" for s in sentences]
    assert f1_score([s.tags for s in sentences], [tags_of(r) for r in conll]) == pytest.approx(f1, abs=1e-6)

    texts = [r for r in predicted if r["id"].startswith(str(inputs / "texts.txt"))]
    assert [r["id"].rpartition(":")[2] for r in texts] == ["1", "3"]
    for record in texts:
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["text"] and 0 <= entity["score"] <= 1


def test_the_exported_tagger_loads_in_a_transformers_pipeline(ner_checkpoint: Path) -> None:
    from transformers import pipeline

    tag = pipeline("token-classification", model=str(ner_checkpoint.parent / "hf_model"), device="cpu")
    labels = {entity["entity"] for entity in tag("Maria Costa visited Cairo .")}
    assert labels <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}


@pytest.fixture(scope="module")
def mlm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlm")
    corpus = corpus_txt(root / "corpus.txt", lines=150)
    overrides = ["data=mlm_text_file", "model=masked_lm", f"data.train_file={corpus}", "trainer.max_epochs=1"]
    return train_then_keep_only_the_checkpoint(root, overrides, [corpus])


def test_fill_mask_lists_top_k_tokens_for_each_mask_and_eval_scores_a_new_corpus(
    mlm_checkpoint: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "masked.txt"
    texts.write_text("Anna Berg lives in [MASK] .\nTom Lee likes [MASK] films and [MASK] books .\n")
    args = [*PREDICT_QUIET, f"ckpt_path={mlm_checkpoint}", f"input={texts}", "top_k=3"]
    check_ok(run_cli("litforge.predict", args, tmp_path, env=ONE_THREAD))
    filled = records(tmp_path, "predict")
    assert [r["id"] for r in filled] == ["1", "2"] and [len(r["masks"]) for r in filled] == [1, 2]
    model = build_task(load_checkpoint(mlm_checkpoint)).eval()
    for record in filled:
        batch = model.tokenizer([record["text"]], return_tensors="pt")
        with torch.no_grad():
            best = model(batch)[batch["input_ids"] == model.tokenizer.mask_token_id].argmax(-1).tolist()
        for candidates, token_id in zip(record["masks"], best, strict=True):
            scores = [c["score"] for c in candidates]
            assert len(candidates) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1
            assert candidates[0]["token"] == model.tokenizer.convert_ids_to_tokens(token_id)

    corpus = corpus_txt(tmp_path / "new_corpus.txt", lines=40, seed=2)
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={mlm_checkpoint}", f"data.test_path={corpus}"], tmp_path)
    check_ok(proc)
    assert f"test split: 40 texts from {corpus}" in proc.stdout + proc.stderr
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert {"test/loss", "test/perplexity", "test/acc"} <= set(json.loads((evaluated / "metrics.json").read_text()))

    no_mask = tmp_path / "plain.txt"
    no_mask.write_text("Anna Berg lives in Paris .\n")
    proc = run_cli("litforge.predict", [*PREDICT_QUIET, f"ckpt_path={mlm_checkpoint}", f"input={no_mask}"], tmp_path)
    assert proc.returncode == 2 and f"{no_mask} (id 1)" in proc.stderr and "has no [MASK]" in proc.stderr
