"""Token classification (NER): configs, windows, seqeval metrics, and train/eval/predict as users run them."""

import csv
import json
from pathlib import Path

import hydra
import pytest

from litforge.data.text.ner_corpus import generate_sentences, write_conll
from litforge.data.text.token_classification import TokenDataModule
from litforge.tasks.token_classification import entity_scores
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY = [
    "experiment=ner_offline",
    "data.vocab_size=300",
    "data.batch_size=16",
    "model.backbone.config.hidden_size=32",
    "model.backbone.config.num_hidden_layers=1",
    "model.backbone.config.intermediate_size=64",
    "callbacks.lr_monitor=null",
]


def datamodule(tmp_path: Path, *overrides: str) -> TokenDataModule:
    cfg = compose_config(
        [*TINY, *QUIET, "data.num_sentences=200", f"paths.data_dir={tmp_path / 'data'}", *overrides], log_dir=tmp_path
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    return dm


def test_experiments_compose(tmp_path: Path) -> None:
    offline = compose_config(["experiment=ner_offline"], log_dir=tmp_path)
    assert offline.model._target_.endswith("TokenClassificationModule") and offline.model.monitor == "val/f1"
    assert offline.model.mode == "max" and offline.data.tokenizer is None
    conll = compose_config(["experiment=conll_ner"], log_dir=tmp_path)
    assert conll.data.tokenizer == conll.model.backbone.pretrained_model_name_or_path == "bert-base-cased"
    wikiann = compose_config(["experiment=conll_ner", "data=wikiann", "data.config_name=de"], log_dir=tmp_path)
    assert wikiann.data.name == "unimelb-nlp/wikiann" and wikiann.data.tag_column == "ner_tags"
    compose_config(["experiment=ner_offline", "data=conll_file"], log_dir=tmp_path)


def test_seqeval_scores_on_a_hand_checked_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "I-PER"]]
    # lenient: PER, ORG and the I-PER (read as an entity) are right; LOC is tagged ORG
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(3 / 4) and scores["recall"] == pytest.approx(3 / 4)
    assert scores["token_acc"] == pytest.approx(5 / 7)
    # strict IOB2: an entity starting with I- is not an entity, so precision 2/3 and recall 2/4
    strict = entity_scores(gold, pred, strict=True)
    assert strict["precision"] == pytest.approx(2 / 3) and strict["recall"] == pytest.approx(2 / 4)
    assert strict["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))


def test_long_sentences_become_windows_with_every_word_labelled(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, "data.max_length=8")
    examples = dm.splits["train"]
    assert max(len(e["input_ids"]) for e in examples) <= 8
    assert len(examples) > len(dm.sentences["train"])
    assert examples.cache_files, "the tokens are memory-mapped from their cache"
    words = sum(len(w) for w in dm.sentences["train"]["words"])
    assert sum(sum(e["word_start"]) for e in examples) == words
    assert dm.id2label == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    truncated = datamodule(tmp_path / "cut", "data.max_length=8", "data.overflow=truncate")
    assert len(truncated.splits["train"]) == len(truncated.sentences["train"])


def test_a_tag_outside_the_given_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"generated sentence \d+ .*tag 'B-\w+' .*not in the label list"):
        datamodule(tmp_path, "data.labels=[O,B-PER,I-PER]")


def test_fast_dev_run_through_train(tmp_path: Path) -> None:
    from litforge.train import train

    overrides = [*TINY, *QUIET, "data.num_sentences=100", "debug=fdr", f"paths.data_dir={tmp_path / 'data'}"]
    metrics = train(compose_config(overrides, log_dir=tmp_path))
    assert {"test/f1", "test/precision", "test/recall", "test/token_acc", "test/loss"} <= set(metrics)


def test_train_on_a_conll_file_then_eval_and_predict_from_the_checkpoint(tmp_path: Path) -> None:
    train_file = write_conll(generate_sentences(200, seed=1), tmp_path / "train.conll")
    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    train = [*TINY, "data=conll_file", f"data.train_file={train_file}", "data.vocab_size=300", *common]
    train += ["trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    check_ok(run_cli("litforge.train", train, tmp_path, env=ONE_THREAD))
    (run,) = run_dirs(tmp_path)
    trained = json.loads((run / "metrics.json").read_text())
    assert {"test/f1", "test/precision", "test/recall", "test/token_acc", "val/f1"} <= set(trained)
    report = list(csv.DictReader((run / "entity_report.csv").open()))
    assert {"PER", "LOC", "ORG", "micro avg"} <= {row["type"] for row in report}
    best = next((run / "checkpoints").glob("best_*.ckpt"))

    check_ok(run_cli("litforge.eval", [f"ckpt_path={best}", *common], tmp_path, env=ONE_THREAD))
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert json.loads((evaluated / "metrics.json").read_text())["test/f1"] == pytest.approx(trained["test/f1"])

    # prediction in-process (the CLI path's own function) to keep the test short on shared CPUs
    from litforge.eval import predict

    text = "Angela Merkel visited Paris ."
    cfg = compose_config([f"ckpt_path={best}", f"predict.texts=['{text}']"], "eval", tmp_path / "predict")
    (record,) = predict(cfg, best)
    assert record["text"] == text
    assert (tmp_path / "predict/run/predictions.jsonl").is_file()
    for entity in record["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"] and 0 <= entity["score"] <= 1
        assert entity["type"] in ("PER", "LOC", "ORG")


def test_a_malformed_conll_line_exits_with_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("Angela B-PER\nMerkel I-PER\n\nvisited O extra\n")
    overrides = [*TINY, *QUIET, "data=conll_file", f"data.train_file={bad}", f"paths.data_dir={tmp_path / 'data'}"]
    proc = run_cli("litforge.train", overrides, tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad} line 4: 3 columns" in proc.stderr
    assert not run_dirs(tmp_path)
