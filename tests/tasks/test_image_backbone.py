"""Vision backbones on the image classifier: configs, preprocessing, fine-tuning controls, checkpoints,
the Hugging Face export, and train/predict from PNG files as users run them."""

import csv
import json
import shutil
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch

from litforge.assembly import instantiate_datamodule, instantiate_task, prepare_datamodule
from litforge.tasks.finetune import layer_index
from litforge.tasks.image_classification import ImageClassificationModule
from litforge.tasks.registry import check_data_fits_model
from litforge.tasks.vision_backbone import ImagePreprocessor, VisionBackbone, processor_settings
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs
from tests.user_files import png_tree

OFFLINE = ("resnet_tiny", "vit_tiny")
HUB = ("resnet50", "vit_base", "convnext_tiny", "dinov2_small")
# fewer digits, smaller inputs: a test step costs milliseconds
SMALL = ["data.classes=[0,1,2]", "data.batch_size=16"]

pytestmark = pytest.mark.usefixtures("one_thread")


def build(
    tmp_path: Path, backbone: str | None, *overrides: str
) -> tuple[L.LightningDataModule, ImageClassificationModule]:
    chosen = [f"model/backbone={backbone}"] if backbone else []
    cfg = compose_config(["data=digits", *chosen, *SMALL, *overrides], log_dir=tmp_path)
    datamodule = instantiate_datamodule(cfg.data)
    prepare_datamodule(datamodule)
    torch.manual_seed(0)
    return datamodule, instantiate_task(cfg.model, datamodule.model_kwargs())


def one_batch(datamodule: L.LightningDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)


def test_backbones_replace_the_plain_net_and_the_default_stays_the_cnn(tmp_path: Path) -> None:
    plain = compose_config([], log_dir=tmp_path)
    assert plain.model.net._target_ == "litforge.nets.CNN" and "backbone" not in plain.model
    for name in (*OFFLINE, *HUB):
        cfg = compose_config([f"model/backbone={name}"], log_dir=tmp_path)
        assert cfg.model.net is None and "pretrained_model_name_or_path" in cfg.model.backbone, name
    assert compose_config(["model/backbone=vit_base"]).model.backbone.processor is None
    for experiment in ("digits_transfer", "cifar10_vit", "fashion_mnist_resnet"):
        assert compose_config([f"experiment={experiment}"]).model.net is None


def test_text_and_vision_backbones_are_refused_on_the_other_modality() -> None:
    text_on_images = compose_config(["model/backbone=tiny_bert"])
    with pytest.raises(UserError, match="tiny_bert is a text backbone.*model/backbone=resnet_tiny"):
        check_data_fits_model(text_on_images, {"model": "image_classifier", "model/backbone": "tiny_bert"})
    images_on_text = compose_config(["data=text_offline", "model=text_classifier", "model/backbone=vit_tiny"])
    with pytest.raises(UserError, match="vit_tiny is a vision backbone.*model/backbone=tiny_bert"):
        check_data_fits_model(images_on_text, {"model": "text_classifier", "model/backbone": "vit_tiny"})


@pytest.mark.parametrize("backbone", OFFLINE)
def test_tiny_backbone_builds_offline_and_overfits_a_batch(backbone: str, tmp_path: Path) -> None:
    datamodule, model = build(tmp_path, backbone)
    assert model.model.config.id2label == {0: "0", 1: "1", 2: "2"}
    x, y = one_batch(datamodule)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(x).argmax(-1) == y).all(), loss


def test_preprocessing_undoes_the_data_scaling_then_resizes_repeats_and_normalises() -> None:
    settings = {"image_size": [16, 16], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.5], "channels": 3}
    pixels = torch.rand(2, 1, 8, 8) * 16
    scaling = {"mean": [6.0], "std": [4.0], "max": 16.0}
    out = ImagePreprocessor(settings, scaling)((pixels - 6.0) / 4.0)
    unit = torch.nn.functional.interpolate(pixels / 16, size=(16, 16), mode="bilinear", antialias=True)
    expected = (unit.expand(-1, 3, -1, -1) - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.5]
    ).view(1, 3, 1, 1)
    assert out.shape == (2, 3, 16, 16) and torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(UserError, match="model.backbone.processor.mean=.*3 numbers"):
        processor_settings(None, {"image_size": [8, 8], "mean": [0.1, 0.2], "std": [1.0]}, 3)
    with pytest.raises(UserError, match="a backbone built from a config; set image_size"):
        processor_settings(None, {"mean": [0.5], "std": [0.5]}, 3)


def test_checkpoint_carries_the_processor_settings_and_rebuilds_offline(tmp_path: Path) -> None:
    datamodule, model = build(tmp_path, "resnet_tiny", "model.backbone.processor.image_size=[24,24]")
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    backbone = loaded["hyper_parameters"]["backbone"]
    assert backbone["processor"] == {"image_size": [24, 24], "mean": [0.5] * 3, "std": [0.5] * 3, "channels": 3}
    assert backbone["pretrained_model_name_or_path"] is None
    rebuilt = ImageClassificationModule(**loaded["hyper_parameters"])
    rebuilt.load_state_dict(loaded["state_dict"])
    x, _ = one_batch(datamodule)
    model.eval()
    rebuilt.eval()
    assert rebuilt.net.preprocess(x).shape[-2:] == (24, 24)
    assert torch.allclose(model(x), rebuilt(x), atol=1e-6)


def test_export_loads_with_auto_classes_and_gives_the_same_outputs(tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    datamodule, model = build(tmp_path, "vit_tiny")
    model.export(str(tmp_path / "hf"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert loaded.config.id2label == {0: "0", 1: "1", 2: "2"}
    x, _ = one_batch(datamodule)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=model.net.preprocess(x)).logits, model(x), atol=1e-5)
    processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert (processor.size["height"], processor.size["width"]) == (32, 32)
    assert list(processor.image_mean) == [0.5] * 3 and processor.rescale_factor == pytest.approx(1 / 255)
    # the exported folder is a backbone: its processor settings, architecture and weights come back
    again = VisionBackbone({"pretrained_model_name_or_path": str(tmp_path / "hf")}, ["0", "1", "2"], [1, 8, 8], None)
    assert again.processor == model.net.processor
    assert torch.equal(
        again.model.vit.embeddings.patch_embeddings.projection.weight,
        model.model.vit.embeddings.patch_embeddings.projection.weight,
    )


def test_fine_tuning_controls_group_stages_and_freeze_the_backbone(tmp_path: Path) -> None:
    names = ["resnet.embedder.x", "resnet.encoder.stages.1.layers.0.y", "classifier.1.weight", "vit.encoder.layer.0.z"]
    assert [layer_index(name, 2) for name in names] == [0, 2, 3, 1]
    datamodule, model = build(tmp_path, "resnet_tiny", "model.layerwise_lr_decay=0.5", "model.freeze_backbone_epochs=1")
    lr = model.hparams.optimizer["lr"]
    groups = model.parameter_groups()
    assert sorted({g["lr"] for g in groups}) == pytest.approx([lr / 8, lr / 4, lr / 2, lr])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    stem = model.model.resnet.embedder.embedder.convolution.weight
    seen = []

    class Watch(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen.append(stem.detach().clone())

    before = stem.detach().clone()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[Watch()],
    )
    trainer.fit(model, datamodule=datamodule)
    assert torch.equal(seen[0], before) and not torch.equal(seen[1], seen[0])
    with pytest.raises(UserError, match="fine-tune a pretrained backbone"):
        build(tmp_path, None, "model.freeze_backbone_epochs=1")


def test_label_smoothing_and_mixup_train(tmp_path: Path) -> None:
    datamodule, model = build(tmp_path, "resnet_tiny", "model.label_smoothing=0.1", "model.mixup_alpha=0.4")
    trainer = L.Trainer(
        max_steps=2,
        log_every_n_steps=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])


def test_train_then_eval_and_predict_pngs_from_the_checkpoint_alone(tmp_path: Path) -> None:
    """A user's PNG folder (grey and colour, mixed sizes) through the tiny ResNet, then new PNGs predicted."""
    pictures = png_tree(tmp_path / "pictures", per_class=6)
    train = [
        *QUIET,
        "data=image_folder",
        f"data.path={pictures}",
        "data.image_size=[12,12]",
        "data.batch_size=8",
        "model/backbone=resnet_tiny",
        "model.backbone.processor.image_size=[16,16]",
        "trainer.max_epochs=2",
    ]
    check_ok(run_cli("litforge.train", train, tmp_path / "logs"))
    (run,) = run_dirs(tmp_path / "logs")
    assert json.loads((run / "metrics.json").read_text())["test/acc"] >= 0
    exported = json.loads((run / "hf_model" / "config.json").read_text())
    assert exported["id2label"] == {"0": "cat", "1": "dog", "2": "fox"}
    assert (run / "hf_model" / "preprocessor_config.json").is_file()
    # eval and predict from the checkpoint alone: the training images are gone
    shutil.rmtree(pictures)
    new = png_tree(tmp_path / "new", per_class=3, seed=1)
    checkpoint = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    check_ok(
        run_cli(
            "litforge.eval", ["extras=quiet", "trainer=cpu", checkpoint, f"data.test_path={new}"], tmp_path / "logs"
        )
    )
    (evaluated,) = run_dirs(tmp_path / "logs", "eval")
    assert 0 <= json.loads((evaluated / "metrics.json").read_text())["test/acc"] <= 1
    proc = run_cli(
        "litforge.predict", ["extras=quiet", "trainer=cpu", checkpoint, f"input={new / 'dog'}"], tmp_path / "logs"
    )
    check_ok(proc)
    (predicted,) = run_dirs(tmp_path / "logs", "predict")
    with open(predicted / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {row["prediction"] for row in rows} <= {"cat", "dog", "fox"}
    assert all(abs(sum(float(row[f"prob/{c}"]) for c in ("cat", "dog", "fox")) - 1) < 1e-4 for row in rows)


@pytest.mark.network
@pytest.mark.parametrize("backbone", HUB)
def test_hub_backbone_reads_its_processor_and_builds_a_head_for_the_classes(backbone: str, tmp_path: Path) -> None:
    _, model = build(tmp_path, backbone)
    settings = model.net.processor
    assert settings["channels"] == 3 and len(settings["image_size"]) == 2 and len(settings["mean"]) == 3
    assert model.model.config.num_labels == 3
