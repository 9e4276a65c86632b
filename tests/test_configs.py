"""Every option of every config group composes, and what it describes can be built."""

import importlib.util
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from litforge.assembly import instantiate_callbacks, instantiate_loggers, instantiate_task, trainer_settings
from litforge.tasks.optim import configure_optimization
from litforge.utils.config import CONFIG_DIR
from litforge.utils.parallel import build_strategy
from tests.helpers import compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_group_has_options() -> None:
    for group in [
        "data",
        "model",
        "model/net",
        "model/optimizer",
        "model/scheduler",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "hydra",
        "extras",
        "debug",
        "experiment",
        "hparams_search",
    ]:
        assert options(group), group


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"experiment={name}"], log_dir=tmp_path)
    assert cfg.model.monitor.startswith("val/")
    hydra.utils.instantiate(cfg.data)
    trainer_settings(cfg.trainer)


@pytest.mark.parametrize("name", options("data"))
def test_data_option_instantiates(name: str, tmp_path: Path) -> None:
    required = {"image_folder": ["data.path=somewhere"], "tabular_file": ["data.path=somewhere.csv", "data.target=y"]}
    required["tabular_classification_file"] = required["tabular_file"]
    cfg = compose_config([f"data={name}", *required.get(name, [])], log_dir=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.batch_size == cfg.data.batch_size


def _image_model(cfg: DictConfig) -> torch.nn.Module:
    return instantiate_task(cfg.model, {"input_shape": [1, 8, 8], "num_classes": 10})


@pytest.mark.parametrize("net", options("model/net"))
@pytest.mark.parametrize("optimizer", options("model/optimizer"))
def test_net_and_optimizer_build_and_step(net: str, optimizer: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model/net={net}", f"model/optimizer={optimizer}"], log_dir=tmp_path)
    model = _image_model(cfg)
    opt = configure_optimization(model, cfg.model.optimizer, None, total_steps=10, monitor="val/acc")["optimizer"]
    assert type(opt).__name__.lower() == optimizer
    loss = model(torch.randn(4, 1, 8, 8)).logsumexp(-1).mean()
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("scheduler", options("model/scheduler"))
def test_scheduler_builds_and_steps(scheduler: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model/scheduler={scheduler}"], log_dir=tmp_path)
    model = _image_model(cfg)
    wiring = configure_optimization(model, cfg.model.optimizer, cfg.model.scheduler, total_steps=50, monitor="val/acc")
    config = wiring["lr_scheduler"]
    assert config["interval"] == cfg.model.scheduler.interval
    sched, opt = config["scheduler"], wiring["optimizer"]
    lrs = []
    for _ in range(20):
        opt.step()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            assert config["monitor"] == "val/acc"
            sched.step(0.5)
        else:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert len(set(lrs)) > 1, f"{scheduler} never changed the learning rate"


@pytest.mark.parametrize("init", ["default", "xavier", "kaiming"])
def test_weight_init_options(init: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model.init={init}"], log_dir=tmp_path)
    model = _image_model(cfg)
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(b) == 0 for b in biases) == (init != "default")


@pytest.mark.parametrize("name", options("callbacks"))
def test_callbacks_option_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"callbacks={name}"], log_dir=tmp_path)
    callbacks = instantiate_callbacks(cfg.callbacks, has_logger=True)
    assert len(callbacks) == len([c for c in (cfg.callbacks or {}).values() if c])


@pytest.mark.parametrize("name", options("logger"))
def test_logger_option_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"logger={name}"], log_dir=tmp_path)
    assert bool(instantiate_loggers(cfg.logger)) == (name != "none")


def device_marked(group: str) -> list:
    """Each option of a trainer group, marked `gpu` or `mps` when its accelerator needs one."""
    marks = {"gpu": [pytest.mark.gpu], "mps": [pytest.mark.mps]}
    params = []
    for name in options(group):
        accelerator = OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml").get("accelerator")
        params.append(pytest.param(name, marks=marks.get(accelerator, [])))
    return params


@pytest.mark.parametrize("name", device_marked("trainer"))
def test_trainer_option_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"trainer={name}"], log_dir=tmp_path)
    wanted = cfg.trainer.get("devices")
    if cfg.trainer.accelerator == "gpu" and isinstance(wanted, int) and torch.cuda.device_count() < wanted:
        pytest.skip(f"trainer={name} needs {cfg.trainer.devices} GPUs")
    if name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("trainer=deepspeed needs the deepspeed package")
    settings = trainer_settings(cfg.trainer)
    settings.pop("_target_")
    settings["strategy"] = build_strategy(settings["strategy"])
    from lightning.pytorch import Trainer

    Trainer(**{**settings, "logger": False, "enable_checkpointing": False})


@pytest.mark.parametrize("name", options("debug"))
def test_debug_option_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"debug={name}"], log_dir=tmp_path)
    assert cfg.extras.enforce_tags is False


@pytest.mark.parametrize("name", options("hparams_search"))
def test_hparams_search_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"hparams_search={name}"], log_dir=tmp_path)
    assert cfg.optimized_metric == cfg.model.monitor


def test_adam_and_adamw_take_the_fused_kernel_unless_the_run_or_the_config_says_otherwise(
    tmp_path: Path,
) -> None:
    cfg = compose_config(["model/optimizer=adamw"], log_dir=tmp_path)
    model = _image_model(cfg)

    def fused(allowed: bool = True, **settings: object) -> bool | None:
        optimizer_cfg = {**cfg.model.optimizer, **settings}
        wiring = configure_optimization(model, optimizer_cfg, None, 10, "val/acc", fused_allowed=allowed)
        return wiring["optimizer"].param_groups[0]["fused"]

    assert fused() is True
    # e.g. mixed precision with clipping: Lightning clips unscaled gradients, which a fused step unscales itself
    assert fused(allowed=False) is None
    assert fused(fused=False) is False
    sgd = compose_config(["model/optimizer=sgd"], log_dir=tmp_path).model.optimizer
    assert "fused" not in sgd
