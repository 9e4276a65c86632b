"""The BiLSTM and TextCNN text encoders (model/backbone=bilstm|textcnn) for text classification and NER:
each builds, overfits a batch, rebuilds from its checkpoint and exports; word vectors initialise the
embedding rows they name; bad word-vector files are refused; train, eval and predict as users run them."""

import json
import logging
from collections import Counter
from pathlib import Path

import hydra
import lightning.pytorch as L
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.tasks.hf_backbone import init_word_vectors
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY_TEXT = ["data.num_examples=120", "data.vocab_size=150", "data.max_length=24", "data.batch_size=8"]
TINY_NER = ["data.num_sentences=60", "data.vocab_size=200", "data.max_length=24", "data.batch_size=8"]
EXPERIMENTS = {"text": ["experiment=text_clf_bilstm", *TINY_TEXT], "ner": ["experiment=ner_bilstm", *TINY_NER]}
TINY_ENCODERS = {
    "bilstm": ["model.backbone.config.embedding_dim=16", "model.backbone.config.hidden_size=16"],
    "textcnn": [
        "model.backbone.config.embedding_dim=16",
        "model.backbone.config.num_filters=16",
        "model.backbone.config.kernel_sizes=[3,5]",
    ],
}
MODEL_CLASSES = {
    ("bilstm", "text"): "BiLSTMForSequenceClassification",
    ("bilstm", "ner"): "BiLSTMForTokenClassification",
    ("textcnn", "text"): "TextCNNForSequenceClassification",
    ("textcnn", "ner"): "TextCNNForTokenClassification",
}

# tiny models run faster on one thread than fighting other processes for a few shared cores
pytestmark = pytest.mark.usefixtures("one_thread")


def overrides(encoder: str, task: str, *extra: str) -> list[str]:
    return [*EXPERIMENTS[task], f"model/backbone={encoder}", *TINY_ENCODERS[encoder], *extra]


@pytest.fixture(scope="module")
def datamodules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, L.LightningDataModule]:
    """One prepared data module per task, shared by the encoders (their tokenizer does not depend on them)."""
    root = tmp_path_factory.mktemp("encoder_data")
    built = {}
    for task in EXPERIMENTS:
        cfg = compose_config([*overrides("bilstm", task), f"paths.data_dir={root / 'data'}"], log_dir=root / task)
        dm = hydra.utils.instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        built[task] = dm
    return built


def build(dm: L.LightningDataModule, encoder: str, task: str, *extra: str, log_dir: Path) -> L.LightningModule:
    cfg = compose_config(overrides(encoder, task, *extra), log_dir=log_dir)
    torch.manual_seed(0)
    return instantiate_task(cfg.model, dm.model_kwargs())


@pytest.mark.parametrize(("encoder", "task"), list(MODEL_CLASSES))
def test_builds_overfits_a_batch_and_rebuilds_from_its_checkpoint(
    encoder: str, task: str, datamodules: dict, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    dm = datamodules[task]
    no_noise = ("model.optimizer.lr=0.01", "model.scheduler=null", "model.backbone.config.dropout=0")
    model = build(dm, encoder, task, *no_noise, log_dir=tmp_path)
    assert type(model.model).__name__ == MODEL_CLASSES[(encoder, task)]
    assert model.model.config.vocab_size == len(dm.tokenizer)
    trainer = L.Trainer(
        max_epochs=60,
        overfit_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["train/loss_epoch"] < 0.05
    if task == "text":
        assert trainer.callback_metrics["train/acc"] == 1.0

    # the checkpoint's hyperparameters are plain values that rebuild the model without the config
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    rebuilt = type(model)(**loaded["hyper_parameters"])
    rebuilt.load_state_dict(loaded["state_dict"])
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    rebuilt.eval()
    logits = model(batch)
    assert torch.allclose(logits, rebuilt(batch))
    # a text's outputs do not depend on the longer texts it is batched with
    lengths = batch["attention_mask"].sum(1)
    row, length = int(lengths.argmin()), int(lengths.min())
    assert length < batch["input_ids"].shape[1]
    alone = model({key: batch[key][row : row + 1, :length] for key in ("input_ids", "attention_mask")})
    assert torch.allclose(alone[0], logits[row, :length] if task == "ner" else logits[row], atol=1e-5)

    # the Hugging Face export reloads through the Auto class with equal outputs and the label names
    model.export(str(tmp_path / "hf_model"))
    auto = AutoModelForSequenceClassification if task == "text" else AutoModelForTokenClassification
    exported = auto.from_pretrained(tmp_path / "hf_model").eval()
    assert exported.config.id2label == dict(enumerate(dm.id2label))
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    assert torch.allclose(exported(**inputs).logits, logits, atol=1e-6)


@pytest.mark.parametrize(
    ("encoder", "setting", "message"),
    [
        ("textcnn", "kernel_sizes=[]", r"kernel_sizes=\[\]: give a list of convolution widths"),
        ("bilstm", "num_layers=0", r"num_layers=0: give a whole number of at least 1"),
    ],
)
def test_an_encoder_size_that_cannot_work_is_refused(
    encoder: str, setting: str, message: str, datamodules: dict, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=f"model.backbone.config.{message}"):
        build(datamodules["text"], encoder, "text", f"model.backbone.config.{setting}", log_dir=tmp_path)


def test_word_vectors_initialise_the_rows_they_name(datamodules: dict, tmp_path: Path, caplog) -> None:
    dm = datamodules["ner"]  # a cased tokenizer: a capitalised token finds its lowercased vector
    vocab = dm.tokenizer.get_vocab()
    forms = Counter(token.lower() for token in vocab)
    alone = sorted(t for t in vocab if t.isalpha() and len(t) > 2 and forms[t.lower()] == 1)
    lower = [t for t in alone if t.islower()][:2]
    upper = next(t for t in alone if t[0].isupper())
    vectors = {lower[0]: [0.5] * 16, lower[1]: [-0.25] * 16, upper.lower(): [1.5] * 16, "zzzunseen": [9.0] * 16}
    path = tmp_path / "vectors.txt"
    # word2vec's header line, then GloVe's layout
    path.write_text(f"{len(vectors)} 16\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()))
    with caplog.at_level(logging.INFO, logger="litforge.tasks.hf_backbone"):
        model = build(dm, "bilstm", "ner", f"model.backbone.word_vectors={path}", log_dir=tmp_path)
    weight = model.model.get_input_embeddings().weight
    assert torch.equal(weight[vocab[lower[0]]], torch.full((16,), 0.5))
    assert torch.equal(weight[vocab[lower[1]]], torch.full((16,), -0.25))
    assert torch.equal(weight[vocab[upper]], torch.full((16,), 1.5))
    assert f"3 of the {len(vocab)} vocabulary tokens found (1 by their lowercased form)" in caplog.text
    assert not torch.equal(weight[vocab["[UNK]"]], torch.full((16,), 0.5))
    # the checkpoint rebuilds without the file
    checkpoint = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    assert "word_vectors" not in checkpoint["hyper_parameters"]["backbone"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{0} 0.1 0.2 0.3\n{1} 0.1 0.2\n", r"vectors.txt line 2: the word '{1}' has 2 numbers, .* first vector has 3"),
        ("{0} 0.1 0.2 0.3\n{1} 0.1 x 0.3\n", r"vectors.txt line 2: 'x' is not a number"),
        ("\n\n", r"vectors.txt holds no word vectors"),
    ],
)
def test_a_bad_line_in_a_word_vectors_file_names_its_line(
    content: str, message: str, datamodules: dict, tmp_path: Path
) -> None:
    from transformers import AutoModelForSequenceClassification

    from litforge.tasks.hf_backbone import build_backbone

    dm = datamodules["text"]
    words = sorted(t for t in dm.tokenizer.get_vocab() if t.isalpha() and t.islower())[:2]
    path = tmp_path / "vectors.txt"
    path.write_text(content.format(*words))
    model = build_backbone(
        AutoModelForSequenceClassification,
        {"config": {"model_type": "litforge_bilstm", "embedding_dim": 3, "hidden_size": 4}},
        dm.tokenizer,
        num_labels=2,
    )
    with pytest.raises(UserError, match=message.format(*words)):
        init_word_vectors(model, str(path), dm.tokenizer)


def test_a_missing_or_wrong_sized_word_vectors_file_exits_2_before_any_data_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "glove.6B.100d.txt"
    common = [*QUIET, *overrides("bilstm", "text"), f"paths.data_dir={tmp_path / 'data'}"]
    proc = run_cli("litforge.train", [*common, f"model.backbone.word_vectors={missing}"], tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"model.backbone.word_vectors={missing}: no such file" in proc.stderr
    assert "GloVe's format" in proc.stderr and "Traceback" not in proc.stderr

    small = tmp_path / "vectors.txt"
    small.write_text("film 0.1 0.2 0.3\nplot 0.3 0.2 0.1\n")
    proc = run_cli("litforge.train", [*common, f"model.backbone.word_vectors={small}"], tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"model.backbone.word_vectors={small} holds vectors of 3 numbers" in proc.stderr
    assert "model.backbone.config.embedding_dim=3" in proc.stderr
    assert not run_dirs(tmp_path)


def test_text_classification_with_bilstm_round_trips_through_eval_and_predict(tmp_path: Path, caplog) -> None:
    from litforge.train import train

    words = tmp_path / "vectors.txt"
    words.write_text("".join(f"{w} {' '.join(['0.1'] * 16)}\n" for w in ("great", "film", "dull", "plot")))
    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    train_overrides = [*overrides("bilstm", "text"), f"model.backbone.word_vectors={words}", "trainer.max_epochs=2"]
    with caplog.at_level(logging.INFO, logger="litforge.tasks.hf_backbone"):
        trained = train(compose_config([*train_overrides, "callbacks.lr_monitor=null", *common], log_dir=tmp_path))
    assert "vocabulary tokens found" in caplog.text
    assert {"test/acc", "test/f1", "test/auroc"} <= set(trained)
    run = tmp_path / "run"
    assert json.loads((run / "hf_model/config.json").read_text())["model_type"] == "litforge_bilstm"
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    words.unlink()  # the checkpoint carries the embeddings, not the file's path

    check_ok(run_cli("litforge.eval", [f"ckpt_path={best}", *common], tmp_path, env=ONE_THREAD))
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert json.loads((evaluated / "metrics.json").read_text())["test/acc"] == pytest.approx(trained["test/acc"])

    texts = tmp_path / "texts.txt"
    texts.write_text("what a great film\n\nthe plot was not dull\n")
    predict = ["extras=quiet", f"ckpt_path={best}", f"input={texts}", "top_k=1"]
    check_ok(run_cli("litforge.predict", predict, tmp_path, env=ONE_THREAD))
    (predicted,) = run_dirs(tmp_path, "predict")
    records = [json.loads(line) for line in (predicted / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == ["what a great film", "the plot was not dull"]
    assert all(r["label"] in ("negative", "positive") and len(r["probs"]) == 1 for r in records)


def test_ner_with_textcnn_round_trips_through_eval_and_predict(tmp_path: Path) -> None:
    from litforge.eval import evaluate
    from litforge.train import train

    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    run_overrides = [*overrides("textcnn", "ner"), "trainer.max_epochs=2", "callbacks.lr_monitor=null", *common]
    trained = train(compose_config(run_overrides, log_dir=tmp_path))
    assert {"test/f1", "test/precision", "test/recall", "test/token_acc"} <= set(trained)
    best = next((tmp_path / "run/checkpoints").glob("best_*.ckpt"))
    evaluated = evaluate(compose_config([f"ckpt_path={best}", *common], "eval", tmp_path / "eval"), best)
    assert evaluated["test/f1"] == pytest.approx(trained["test/f1"])

    texts = tmp_path / "texts.txt"
    texts.write_text("Angela Merkel visited Paris .\n")
    check_ok(
        run_cli("litforge.predict", ["extras=quiet", f"ckpt_path={best}", f"input={texts}"], tmp_path, env=ONE_THREAD)
    )
    (predicted,) = run_dirs(tmp_path, "predict")
    (record,) = [json.loads(line) for line in (predicted / "predictions.jsonl").read_text().splitlines()]
    assert record["text"] == "Angela Merkel visited Paris ."
    for entity in record["entities"]:
        assert record["text"][entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] in ("PER", "LOC", "ORG")
