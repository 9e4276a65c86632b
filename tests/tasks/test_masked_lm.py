"""Masked LM: configs, the perplexity metric, fixed validation loss, checkpoints, fill-mask from
the CLI, and the hand-over of an exported backbone to text classification."""

import json
import math
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.tasks.masked_lm import MaskedLanguageModelingModule, MaskedTokenMetrics
from litforge.utils.errors import UserError
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, compose_config, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY_DATA = ["data.num_examples=300", "data.vocab_size=200", "data.max_length=24", "data.batch_size=16"]
TINY = [*TINY_DATA, *TINY_BACKBONE]


# tiny models run faster on one thread than fighting other processes for a few shared cores
pytestmark = pytest.mark.usefixtures("one_thread")


def test_experiments_compose(tmp_path: Path) -> None:
    cfg = compose_config(["experiment=mlm_offline"], log_dir=tmp_path)
    assert cfg.model._target_.endswith("MaskedLanguageModelingModule")
    assert (cfg.model.monitor, cfg.model.mode) == ("val/loss", "min")
    assert cfg.data.tokenizer is None and cfg.model.export_dir.endswith("hf_model")
    wiki = compose_config(["experiment=mlm_offline", "data=wikitext"], log_dir=tmp_path)
    assert (wiki.data.source, wiki.data.config_name, wiki.data.mlm_probability) == ("hub", "wikitext-2-raw-v1", 0.15)
    own = compose_config(["experiment=mlm_offline", "data=mlm_text_file", "data.train_file=a.txt"], log_dir=tmp_path)
    assert own.data.source == "files"


def test_perplexity_is_exp_of_the_token_weighted_mean_loss() -> None:
    metric = MaskedTokenMetrics()
    # batch 1: one masked token with p(target) = 1/2; batch 2: two masked tokens, p = 1/4 and 1
    two = torch.log(torch.tensor([[[1.0, 1.0, 1e-9, 1e-9]], [[0.0, 0.0, 0.0, 0.0]]]))
    metric.update(two, torch.tensor([[0], [-100]]))
    logits = torch.log(torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1e-9, 1e-9, 1.0, 1e-9]]]))
    metric.update(logits, torch.tensor([[3, 2]]))
    values = metric.compute()
    # (ln 2 + ln 4 + 0) / 3 tokens; a mean of batch perplexities would give (2 + 2) / 2 = 2
    assert values["loss"].item() == pytest.approx(math.log(8) / 3, abs=1e-5)
    assert values["perplexity"].item() == pytest.approx(2.0, abs=1e-4)
    assert values["acc"].item() == pytest.approx(2 / 3)  # ties go to the first index: 0 right, 3 wrong, 2 right


def build(tmp_path: Path, overrides: list[str]) -> tuple[L.LightningDataModule, MaskedLanguageModelingModule]:
    import hydra

    cfg = compose_config(
        ["experiment=mlm_offline", *overrides, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm, instantiate_task(cfg.model, dm.model_kwargs())


def test_validation_loss_is_the_same_in_every_pass(tmp_path: Path) -> None:
    dm, model = build(tmp_path, TINY)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    first, second = (trainer.validate(model, datamodule=dm, verbose=False)[0] for _ in range(2))
    assert first == second and first["val/perplexity"] == pytest.approx(math.exp(first["val/loss"]), rel=1e-5)


def test_checkpoint_rebuilds_and_fills_masks(tmp_path: Path) -> None:
    dm, model = build(tmp_path, TINY)
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    rebuilt = MaskedLanguageModelingModule(**loaded["hyper_parameters"])
    rebuilt.load_state_dict(loaded["state_dict"])
    rebuilt.predict_top_k = 3
    texts = tmp_path / "masked.txt"
    texts.write_text("The capital of Germany is [MASK].\n")
    reading = type(dm)(**{**dm.hparams, "predict_path": str(texts)})
    reading.load_state_dict(dm.state_dict())
    reading.setup("predict")
    (record,) = rebuilt.eval().predict_step(next(iter(reading.predict_dataloader())), 0)
    (mask,) = record["masks"]
    assert record["id"] == "1" and len(mask) == 3 and mask[0]["score"] >= mask[1]["score"] >= mask[2]["score"]
    assert "[MASK]" not in record["filled"]
    texts.write_text("no mask here\n")
    reading.splits.clear()
    with pytest.raises(UserError, match="has no \\[MASK\\]"):
        reading.setup("predict")


def test_train_export_classify_and_fill_mask_from_the_cli(tmp_path: Path) -> None:
    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    train = ["experiment=mlm_offline", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    train += ["callbacks.lr_monitor=null", *common]
    check_ok(run_cli("litforge.train", train, tmp_path, env=ONE_THREAD))
    (run,) = run_dirs(tmp_path)
    trained = json.loads((run / "metrics.json").read_text())
    assert {"test/loss", "test/perplexity", "test/acc"} <= set(trained)
    exported = run / "hf_model"
    assert (exported / "config.json").is_file() and (exported / "tokenizer.json").is_file()

    best = next((run / "checkpoints").glob("best_*.ckpt"))
    check_ok(run_cli("litforge.eval", [f"ckpt_path={best}", *common], tmp_path, env=ONE_THREAD))
    (evaluated,) = run_dirs(tmp_path, "eval")  # the test split is masked the same way again
    tested = json.loads((evaluated / "metrics.json").read_text())["test/perplexity"]
    assert tested == pytest.approx(trained["test/perplexity"], rel=1e-5)
    fill = [f"ckpt_path={best}", 'predict.texts=["the capital of germany is [MASK]."]', "predict.top_k=2", *common]
    proc = run_cli("litforge.eval", fill, tmp_path, env=ONE_THREAD)
    check_ok(proc)
    assert '"masks"' in proc.stdout

    from transformers import AutoModelForMaskedLM

    from litforge.tasks.text_classification import TextClassificationModule

    classify = [
        "experiment=text_clf_offline",
        "model/backbone=bert_base",
        f"model.backbone.pretrained_model_name_or_path={exported}",
        "data.num_examples=200",
        "data.max_length=24",
    ]
    dm, model = build_classifier(tmp_path / "clf", classify)
    assert isinstance(model, TextClassificationModule) and dm.hparams.tokenizer == str(exported)
    encoder = AutoModelForMaskedLM.from_pretrained(exported).base_model.state_dict()
    assert all(torch.equal(v, model.model.base_model.state_dict()[k]) for k, v in encoder.items())
    L.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False, accelerator="cpu").fit(model, datamodule=dm)

    # continued pre-training starts from the folder too, in training mode (dropout on)
    pretrained = ["model/backbone=bert_base", f"model.backbone.pretrained_model_name_or_path={exported}"]
    _, continued = build(tmp_path / "continued", [*TINY_DATA, *pretrained])
    continued_state = continued.model.base_model.state_dict()
    assert continued.model.training and all(torch.equal(v, continued_state[k]) for k, v in encoder.items())


def build_classifier(tmp_path: Path, overrides: list[str]) -> tuple[L.LightningDataModule, L.LightningModule]:
    import hydra

    cfg = compose_config([*overrides, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    return dm, instantiate_task(cfg.model, dm.model_kwargs())
