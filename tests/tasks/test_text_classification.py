"""Text classification: configs, training controls, checkpoints, and train/eval/predict as users run them."""

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.data.text.classification import TextDataModule
from litforge.tasks.finetune import layer_index
from litforge.tasks.text_classification import TextClassificationModule
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, compose_config, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}

TINY_DATA = ["data.num_examples=300", "data.vocab_size=200", "data.max_length=24", "data.batch_size=16"]


# tiny models run faster on one thread than fighting other processes for a few shared cores
pytestmark = pytest.mark.usefixtures("one_thread")


def build(tmp_path: Path, overrides: list[str]) -> tuple[TextDataModule, TextClassificationModule]:
    """Data and model as train.py builds them, from composed config."""
    import hydra

    cfg = compose_config([*overrides, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm, instantiate_task(cfg.model, dm.model_kwargs())


def tiny_setup(tmp_path: Path, overrides: tuple[str, ...] = ()) -> tuple[TextDataModule, TextClassificationModule]:
    return build(tmp_path, ["experiment=text_clf_offline", *TINY_DATA, *TINY_BACKBONE, *overrides])


def fit(model: L.LightningModule, dm: L.LightningDataModule, **trainer: Any) -> L.Trainer:
    settings = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        **trainer,
    }
    run = L.Trainer(**settings)
    run.fit(model, datamodule=dm)
    return run


def test_experiments_compose(tmp_path: Path) -> None:
    offline = compose_config(["experiment=text_clf_offline"], log_dir=tmp_path)
    assert offline.model._target_.endswith("TextClassificationModule") and offline.model.monitor == "val/acc"
    assert offline.data.tokenizer is None and offline.model.backbone.config.model_type == "bert"
    sst2 = compose_config(["experiment=sst2_bert"], log_dir=tmp_path)
    assert sst2.data.tokenizer == sst2.model.backbone.pretrained_model_name_or_path == "bert-base-uncased"
    assert sst2.trainer.gradient_clip_val == 1.0 and sst2.model.scheduler.interval == "step"
    compose_config(["experiment=sst2_bert", "hparams_search=sst2_optuna"], log_dir=tmp_path)


def test_fast_dev_run_through_train(tmp_path: Path) -> None:
    from litforge.train import train

    cfg = compose_config(
        [
            "experiment=text_clf_offline",
            *TINY_DATA,
            *TINY_BACKBONE,
            "debug=fdr",
            "callbacks.lr_monitor=null",
            *QUIET,
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        log_dir=tmp_path,
    )
    metrics = train(cfg)
    assert {"test/acc", "test/auroc", "test/loss"} <= set(metrics)


def test_overfits_a_batch(tmp_path: Path) -> None:
    no_dropout = ("model.backbone.config.hidden_dropout_prob=0", "model.backbone.config.attention_probs_dropout_prob=0")
    dm, model = tiny_setup(tmp_path, ("model.optimizer.lr=0.01", "model.scheduler=null", *no_dropout))
    run = fit(model, dm, max_epochs=25, overfit_batches=1)
    assert run.callback_metrics["train/loss_epoch"] < 0.05
    assert run.callback_metrics["train/acc"] == 1.0


def test_backbone_frozen_for_the_first_epochs_then_trained(tmp_path: Path) -> None:
    dm, model = tiny_setup(tmp_path, ("model.freeze_backbone_epochs=1",))
    embeddings = model.model.base_model.embeddings.word_embeddings.weight
    head = model.model.classifier.weight
    seen = []

    class Watch(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen.append((embeddings.detach().clone(), head.detach().clone()))

    before = (embeddings.detach().clone(), head.detach().clone())
    fit(model, dm, max_epochs=2, limit_train_batches=3, limit_val_batches=1, callbacks=[Watch()])
    (emb0, head0), (emb1, head1) = seen
    assert torch.equal(emb0, before[0]) and not torch.equal(head0, before[1])
    assert not torch.equal(emb1, emb0) and not torch.equal(head1, head0)


def test_layerwise_lr_decay_groups(tmp_path: Path) -> None:
    _, model = tiny_setup(tmp_path, ("model.layerwise_lr_decay=0.5", "model.backbone.config.num_hidden_layers=2"))
    names = ("bert.embeddings.x", "bert.encoder.layer.1.y", "classifier.weight")
    assert [layer_index(name, 2) for name in names] == [0, 2, 3]
    groups = model.parameter_groups()
    lr = model.hparams.optimizer["lr"]
    assert sorted({g["lr"] for g in groups}) == pytest.approx([lr / 8, lr / 4, lr / 2, lr])
    assert all(g["weight_decay"] == 0 for g in groups if all(p.ndim == 1 for p in g["params"]))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_checkpoint_rebuilds_from_plain_hyperparameters(tmp_path: Path) -> None:
    dm, model = tiny_setup(tmp_path)
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    rebuilt = TextClassificationModule(**loaded["hyper_parameters"])
    rebuilt.load_state_dict(loaded["state_dict"])
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    rebuilt.eval()
    assert torch.allclose(model(batch), rebuilt(batch))
    # the tokenizer travels in the checkpoint, not as a path to the run's folder
    assert "tokenizer_dir" not in loaded["hyper_parameters"]
    assert rebuilt.tokenizer("the plot was not dull")["input_ids"] == dm.tokenizer("the plot was not dull")["input_ids"]


def test_pretrained_backbone_from_a_local_folder(tmp_path: Path) -> None:
    dm, model = tiny_setup(tmp_path / "first")
    folder = tmp_path / "pretrained"
    model.model.save_pretrained(folder)
    dm.tokenizer.save_pretrained(folder)
    overrides = ["model/backbone=bert_base", f"model.backbone.pretrained_model_name_or_path={folder}"]
    dm2, loaded = build(tmp_path / "second", ["experiment=text_clf_offline", *TINY_DATA, *overrides])
    assert dm2.hparams.tokenizer == str(folder)  # the data follows the backbone's tokenizer
    weights = [m.model.base_model.embeddings.word_embeddings.weight for m in (model, loaded)]
    assert torch.equal(*weights)
    checkpoint = {"hyper_parameters": dict(loaded.hparams)}
    loaded.on_save_checkpoint(checkpoint)
    assert checkpoint["hyper_parameters"]["backbone"]["pretrained_model_name_or_path"] is None


@pytest.mark.network
@pytest.mark.slow
def test_distilbert_fine_tunes_on_sst2_from_the_hub(tmp_path: Path) -> None:
    overrides = ["experiment=sst2_bert", "model/backbone=distilbert", "data.max_length=32", "data.num_workers=0"]
    dm, model = build(tmp_path, overrides)
    assert dm.id2label == ["negative", "positive"]
    fit(model, dm, limit_train_batches=2, limit_val_batches=2)
    batch = dict(
        model.tokenizer(["a gorgeous, witty film"], return_tensors="pt"), id=["1"], text=["a gorgeous, witty film"]
    )
    (record,) = model.eval().predict_step(batch, 0)
    assert set(record["probs"]) == {"negative", "positive"}


def test_train_eval_and_predict_from_the_cli(tmp_path: Path) -> None:
    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    train = [
        "experiment=text_clf_offline",
        *TINY_DATA,
        *TINY_BACKBONE,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "callbacks.lr_monitor=null",
        *common,
    ]
    check_ok(run_cli("litforge.train", train, tmp_path, env=ONE_THREAD))
    (run,) = run_dirs(tmp_path)
    assert (run / "plots/confusion_matrix.png").is_file() and (run / "tokenizer/tokenizer.json").is_file()
    trained = json.loads((run / "metrics.json").read_text())
    assert {"test/acc", "test/f1", "test/precision", "test/recall", "test/auroc"} <= set(trained)
    best = next((run / "checkpoints").glob("best_*.ckpt"))

    check_ok(run_cli("litforge.eval", [f"ckpt_path={best}", *common], tmp_path, env=ONE_THREAD))
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert json.loads((evaluated / "metrics.json").read_text())["test/acc"] == pytest.approx(trained["test/acc"])

    texts = tmp_path / "texts.txt"
    texts.write_text("what a great film\n\nthe acting was not good\n")
    predict = [f"ckpt_path={best}", f"predict.file={texts}", "predict.top_k=2", *common]
    proc = run_cli("litforge.eval", predict, tmp_path, env=ONE_THREAD)
    check_ok(proc)
    predicted = sorted(run_dirs(tmp_path, "eval"))[-1] / "predictions.jsonl"
    records = [json.loads(line) for line in predicted.read_text().splitlines()]
    assert [r["text"] for r in records] == ["what a great film", "the acting was not good"]
    assert all(sum(r["probs"].values()) == pytest.approx(1, abs=1e-4) for r in records)
    assert '"label"' in proc.stdout


def test_predict_refuses_empty_texts(tmp_path: Path) -> None:
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={__file__}", "predict.texts=[]"], tmp_path)
    assert proc.returncode == 2 and "predict.texts holds no text" in proc.stderr
