"""Every (data option, model option) pair: the pairs that fit compose with the model's own
defaults and train a fast dev run (or, for data from the hub, build their data module); the
others are refused before anything is built, naming the models that fit."""

import functools
from pathlib import Path

import hydra
import pytest

from litforge.tasks.registry import TASK_DATA, check_data_fits_model
from litforge.utils.config import CONFIG_DIR
from litforge.utils.errors import UserError
from tests.helpers import QUIET, TINY_BACKBONE, compose_config, run_cli, run_dirs
from tests.user_files import conll_file, corpus_txt, houses_csv, png_tree, reviews_csv

DATA = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
# data that downloads (hub data sets, scikit-learn's fetched California set): built, not run
DOWNLOADS = {"mnist", "fashion_mnist", "cifar10", "california", "sst2", "imdb", "ag_news", "conll2003", "wikiann"}
DOWNLOADS.add("wikitext")
TINY_TEXT = ["data.vocab_size=120", "data.max_length=24", "data.batch_size=8"]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The overrides that point each file-reading data option at files like a user's."""
    root = tmp_path_factory.mktemp("user_files")
    return {
        "image_folder": [f"data.path={png_tree(root / 'pets')}", "data.image_size=[12,12]"],
        "tabular_file": [
            f"data.path={houses_csv(root / 'houses.csv', gaps=True)}",
            "data.target=price",
            "data.impute=median",
        ],
        # rooms (1 to 5) as classes; the text column `town` is categorical
        "tabular_classification_file": [
            f"data.path={houses_csv(root / 'rooms.csv', gaps=True)}",
            "data.target=rooms",
            "data.impute=median",
        ],
        "text_file": [f"data.train_file={reviews_csv(root / 'reviews.csv')}", *TINY_TEXT],
        "conll_file": [f"data.train_file={conll_file(root / 'people.conll')}", *TINY_TEXT],
        "mlm_text_file": [f"data.train_file={corpus_txt(root / 'corpus.txt')}", *TINY_TEXT],
        "text_offline": ["data.num_examples=120", *TINY_TEXT],
        "ner_offline": ["data.num_sentences=60", *TINY_TEXT],
        "mlm_offline": ["data.num_examples=120", *TINY_TEXT],
    }


def compose_pair(data: str, model: str, extra: list[str], tmp_path: Path):
    return compose_config([f"data={data}", f"model={model}", *extra], log_dir=tmp_path)


@functools.cache
def targets(data: str, model: str) -> tuple[str, str]:
    """The data module and task classes the pair composes to (composed once per pair)."""
    cfg = compose_config([f"data={data}", f"model={model}"])
    return cfg.data._target_, cfg.model._target_


def fits(data: str, model: str) -> bool:
    data_target, task = targets(data, model)
    return data_target in TASK_DATA[task]


def test_each_data_option_fits_exactly_one_model() -> None:
    for data in DATA:
        fitting = [model for model in MODELS if fits(data, model)]
        assert len(fitting) == 1, (data, fitting)


@pytest.mark.parametrize("data", DATA)
def test_the_fitting_pair_runs_with_the_models_own_defaults(data: str, user_files, tmp_path: Path) -> None:
    from litforge.train import train

    model = next(m for m in MODELS if fits(data, m))
    default = compose_config([f"model={model}"], log_dir=tmp_path)
    hf = "backbone" in default.model
    extra = [*user_files.get(data, []), *(TINY_BACKBONE if hf else [])]
    cfg = compose_pair(data, model, extra, tmp_path)
    if data in DOWNLOADS:
        hydra.utils.instantiate(cfg.data)
    else:
        run = compose_pair(data, model, [*extra, "debug=fdr", *QUIET, f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
        metrics = train(run)
        assert any(k.startswith("test/") for k in metrics), metrics
    # nothing of another model or experiment leaks in: the model's own net/backbone, optimiser and metric
    assert cfg.model._target_ == default.model._target_ and cfg.model.monitor == default.model.monitor
    assert cfg.model.optimizer._target_ == default.model.optimizer._target_
    assert cfg.model.optimizer.lr == default.model.optimizer.lr
    assert cfg.trainer.max_epochs == compose_config([], log_dir=tmp_path).trainer.max_epochs
    if not hf:
        assert cfg.model.net._target_ == default.model.net._target_


@pytest.mark.parametrize("data", DATA)
def test_pairs_that_cannot_work_are_refused_naming_the_models_that_fit(data: str, tmp_path: Path) -> None:
    fitting = [m for m in MODELS if fits(data, m)]
    for model in sorted(set(MODELS) - set(fitting)):
        cfg = compose_pair(data, model, [], tmp_path)
        with pytest.raises(UserError, match=f"Models that fit data={data}: model={fitting[0]}"):
            check_data_fits_model(cfg, {"data": data, "model": model})


def test_cli_refuses_a_pair_that_cannot_work_before_building_anything(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, "data=digits", "model=text_classifier"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "data=digits (ImageDataModule) cannot train model=text_classifier" in proc.stderr
    assert "model=image_classifier" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)


def test_tags_say_what_ran(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", ["--cfg", "job", "--resolve", "data=diabetes", "model=regressor"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tags:\n- diabetes\n- regressor\n- mlp\n" in proc.stdout
    assert "_target_: litforge.nets.MLP" in proc.stdout and "CNN" not in proc.stdout
    plain = run_cli("litforge.train", ["--cfg", "job", "--resolve"], tmp_path)
    assert "tags:\n- digits\n- image_classifier\n- cnn\n" in plain.stdout
    mnist = run_cli("litforge.train", ["--cfg", "job", "--resolve", "data=mnist"], tmp_path)
    assert "tags:\n- mnist\n- image_classifier\n- cnn\n" in mnist.stdout


@pytest.mark.parametrize(
    ("model", "encoder"), [("masked_lm", "bilstm"), ("image_classifier", "textcnn"), ("image_classifier", "bilstm")]
)
def test_a_text_encoder_on_a_task_without_its_head_is_refused(model: str, encoder: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model={model}", f"model/backbone={encoder}"], log_dir=tmp_path)
    with pytest.raises(UserError, match=f"model/backbone={encoder} .* heads for model=text_classifier and model="):
        check_data_fits_model(cfg, {"data": "digits", "model": model, "model/backbone": encoder})


def test_cli_refuses_bilstm_on_the_masked_lm_naming_the_models_that_take_it(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, "experiment=mlm_offline", "model/backbone=bilstm"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "model/backbone=bilstm (model_type litforge_bilstm) is a text encoder with heads for" in proc.stderr
    assert "model=text_classifier and model=token_classifier, not for model=masked_lm" in proc.stderr
    assert "Backbones for model=masked_lm: model/backbone=bert_base, model/backbone=distilbert" in proc.stderr
    assert "textcnn" not in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)
