"""Large models: trainer=fsdp and trainer=deepspeed (composed here, refused at the door on a machine
without CUDA GPUs, run on one with them), Hugging Face gradient checkpointing, torch.compile for
every task, and the effective batch size of gradient accumulation."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from litforge.assembly import build_task, instantiate_task, trainer_settings
from litforge.tasks.training_options import apply_options, checkpointing
from litforge.utils.errors import UserError
from litforge.utils.parallel import build_strategy, effective_batch_line
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, compose_config, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
SHORT = [*QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
SHORT += ["trainer.limit_test_batches=2"]
TEXT = ["experiment=text_clf_offline", "data.num_examples=300", "data.vocab_size=200", "data.max_length=24"]
TEXT += [*TINY_BACKBONE, "callbacks.lr_monitor=null"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None

pytestmark = pytest.mark.usefixtures("one_thread")


# trainer=fsdp, trainer=deepspeed


def test_fsdp_and_deepspeed_presets_compose_on_default(tmp_path: Path) -> None:
    default = compose_config(["trainer=default"], log_dir=tmp_path).trainer
    fsdp = compose_config(["trainer=fsdp"], log_dir=tmp_path).trainer
    assert fsdp.strategy._target_ == "lightning.pytorch.strategies.FSDPStrategy"
    assert (fsdp.strategy.state_dict_type, fsdp.strategy.sharding_strategy) == ("full", "FULL_SHARD")
    assert fsdp.accelerator == "gpu" and fsdp.max_epochs == default.max_epochs
    deepspeed = compose_config(["trainer=deepspeed"], log_dir=tmp_path).trainer
    assert deepspeed.strategy._target_ == "lightning.pytorch.strategies.DeepSpeedStrategy"
    assert deepspeed.strategy.stage == 2
    assert (
        compose_config(["trainer=deepspeed", "trainer.strategy.stage=3"], log_dir=tmp_path).trainer.strategy.stage == 3
    )
    assert set(fsdp) == set(deepspeed) == set(default)


@NO_CUDA
@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (["trainer=fsdp"], ["trainer=fsdp needs CUDA GPUs: this machine has none", "trainer=ddp_sim"]),
        (
            ["trainer=deepspeed", "trainer.strategy.stage=3"],
            ["trainer=deepspeed (ZeRO stage 3) needs CUDA GPUs", "trainer=ddp_sim", "pip install deepspeed"],
        ),
    ],
    ids=["fsdp", "deepspeed_stage_3"],
)
def test_sharded_training_is_refused_before_any_data_without_cuda(
    overrides: list[str], said: list[str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    proc = run_cli("litforge.train", [*TEXT, *SHORT, *overrides, f"paths.data_dir={data_dir}"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    for words in [*said, f"torch {torch.__version__}, cuda available: False"]:
        assert words in proc.stderr, proc.stderr
    if "trainer=deepspeed" in overrides and not HAS_DEEPSPEED:
        assert "the deepspeed package (not installed here" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the text data would have been tokenised into <data_dir>/text_cache; no run directory is left
    assert not data_dir.exists() and not run_dirs(tmp_path)


@NO_CUDA
@pytest.mark.parametrize("name", ["fsdp", "deepspeed_stage_3_offload"])
def test_lightnings_own_strategy_names_are_refused_the_same_way(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"trainer.strategy={name} needs .*CUDA GPUs"):
        trainer_settings(compose_config([f"trainer.strategy={name}"], log_dir=tmp_path).trainer)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer=deepspeed", "trainer.strategy.stage=4"], r"trainer.strategy.stage=4: give a ZeRO stage 1"),
        (["trainer=fsdp", "trainer.strategy.state_dict_type=sharded"], r"state_dict_type=sharded: .* single files"),
        (
            ["trainer=fsdp", "trainer.strategy.sharding_strategy=FULL"],
            r"sharding_strategy=FULL: give one of FULL_SHARD",
        ),
        (
            ["trainer=fsdp", "trainer.strategy.auto_wrap_policy=[transformers.BertLayr]"],
            r"auto_wrap_policy: transformers.BertLayr is no layer class that can be imported",
        ),
    ],
    ids=["stage", "sharded", "sharding", "policy"],
)
def test_a_bad_strategy_value_is_named_before_the_machine_is_judged(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=message):
        trainer_settings(compose_config(overrides, log_dir=tmp_path).trainer)


def test_fsdp_config_builds_lightnings_strategy_with_layer_classes_from_their_paths(tmp_path: Path) -> None:
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import ShardingStrategy
    from transformers.models.bert.modeling_bert import BertLayer

    layer = "transformers.models.bert.modeling_bert.BertLayer"
    overrides = ["trainer=fsdp", f"trainer.strategy.auto_wrap_policy=[{layer}]", "trainer.strategy.cpu_offload=true"]
    overrides += ["trainer.strategy.sharding_strategy=SHARD_GRAD_OP"]
    strategy = build_strategy(trainer_settings_unchecked(overrides, tmp_path)["strategy"])
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy == ShardingStrategy.SHARD_GRAD_OP and strategy.cpu_offload.offload_params
    policy = strategy.kwargs["auto_wrap_policy"]
    bert = compose_config(TEXT).model.backbone.config
    from transformers import BertConfig

    config = BertConfig(**{k: v for k, v in bert.items() if k != "model_type"})
    assert policy(module=BertLayer(config), recurse=False, nonwrapped_numel=0)
    assert not policy(module=torch.nn.Linear(2, 2), recurse=False, nonwrapped_numel=0)
    assert build_strategy("ddp") == "ddp"


def trainer_settings_unchecked(overrides: list[str], log_dir: Path) -> dict:
    """The composed trainer config as plain values, without the machine check that refuses FSDP here."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(overrides, log_dir=log_dir).trainer, resolve=True)


def test_under_fsdp_gradients_are_clipped_by_fsdps_own_norm_over_all_shards(tmp_path: Path) -> None:
    from lightning.pytorch.strategies import FSDPStrategy

    class Root(torch.nn.Module):
        clipped: list[float] = []

        def clip_grad_norm_(self, max_norm: float) -> None:
            self.clipped.append(max_norm)

    task = instantiate_task(compose_config([], log_dir=tmp_path).model, {"input_shape": [1, 8, 8], "num_classes": 10})
    strategy = FSDPStrategy()
    strategy.model = Root()
    task.trainer = type("Trainer", (), {"strategy": strategy})()
    optimizer = torch.optim.SGD(task.parameters(), lr=0.1)
    task.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    assert Root.clipped == [0.5]


def test_a_deepspeed_checkpoint_folder_is_answered_with_the_command_that_makes_it_one_file(tmp_path: Path) -> None:
    # what Lightning's DeepSpeedStrategy writes for best_epoch_001.ckpt: a folder of ZeRO shards
    folder = tmp_path / "checkpoints" / "best_epoch_001.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    (folder / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"not read")
    for module, extra in (("litforge.eval", QUIET), ("litforge.predict", [f"input={tmp_path / 'texts.txt'}"])):
        proc = run_cli(module, [f"ckpt_path={folder}", *extra], tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert f"ckpt_path={folder} is a DeepSpeed checkpoint" in proc.stderr
        assert "convert_zero_checkpoint_to_fp32_state_dict" in proc.stderr
        assert f"ckpt_path={tmp_path / 'checkpoints' / 'best_epoch_001_fp32.ckpt'}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_effective_batch_size_counts_accumulation_devices_and_nodes() -> None:
    line = effective_batch_line(32, 2, 2, 1)
    assert line == "effective batch size 128 = batch 32 x accumulate 2 x 2 devices x 1 node"
    assert effective_batch_line(8, 1, 1, 2) == "effective batch size 16 = batch 8 x accumulate 1 x 1 device x 2 nodes"


# gradient checkpointing


def test_gradient_checkpointing_and_accumulation_train_text_from_the_cli(tmp_path: Path) -> None:
    overrides = [*TEXT, *SHORT, "model.gradient_checkpointing=true", "data.batch_size=8"]
    overrides += ["trainer.accumulate_grad_batches=2", f"paths.data_dir={tmp_path / 'data'}"]
    check_ok(run_cli("litforge.train", overrides, tmp_path, env=ONE_THREAD))
    (run,) = run_dirs(tmp_path)
    log = (run / "train.log").read_text()
    assert "gradient checkpointing on BertForSequenceClassification: is_gradient_checkpointing=True" in log
    assert "effective batch size 16 = batch 8 x accumulate 2 x 1 device x 1 node" in log
    assert {"test/acc", "val/acc"} <= set(json.loads((run / "metrics.json").read_text()))
    # the checkpoint rebuilds the plain model: eval and predict run without checkpointing
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    rebuilt = build_task(torch.load(best, weights_only=True))
    assert not checkpointing(rebuilt.model)


def text_task_and_batch(tmp_path: Path) -> tuple[torch.nn.Module, dict]:
    import hydra

    no_dropout = ["model.backbone.config.hidden_dropout_prob=0", "model.backbone.config.attention_probs_dropout_prob=0"]
    cfg = compose_config([*TEXT, *no_dropout, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return instantiate_task(cfg.model, datamodule.model_kwargs()), next(iter(datamodule.train_dataloader()))


def test_gradient_checkpointing_recomputes_each_layer_and_gives_the_same_gradients(tmp_path: Path) -> None:
    task, batch = text_task_and_batch(tmp_path)
    # a module inside the first layer: a checkpointed layer calls it again in the backward pass
    attention = task.model.bert.encoder.layer[0].attention
    calls = []
    attention.register_forward_hook(lambda *_: calls.append(1))

    def gradients() -> list[torch.Tensor]:
        task.zero_grad()
        calls.clear()
        torch.nn.functional.cross_entropy(task(batch), batch["labels"]).backward()
        return [p.grad.clone() for p in task.parameters()]

    plain = gradients()
    assert len(calls) == 1
    apply_options(task, {"gradient_checkpointing": True})
    assert checkpointing(task.model)
    checkpointed = gradients()
    # the layer ran again in the backward pass, and the gradients are the same
    assert len(calls) == 2
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed, strict=True))


def test_gradient_checkpointing_is_refused_where_hugging_face_has_none(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*SHORT, "model.gradient_checkpointing=true"], tmp_path)
    assert proc.returncode == 2
    assert "model.gradient_checkpointing=true" in proc.stderr and "no Hugging Face backbone" in proc.stderr
    assert not run_dirs(tmp_path)
    bilstm = compose_config(["experiment=text_clf_bilstm", "model.gradient_checkpointing=true"], log_dir=tmp_path).model
    tokenizer = text_task_and_batch(tmp_path)[0].tokenizer_files
    with pytest.raises(UserError, match=r"BiLSTMForSequenceClassification \(model_type litforge_bilstm\) does not"):
        instantiate_task(bilstm, {"num_labels": 2, "id2label": ["neg", "pos"], "tokenizer_files": tokenizer})


# torch.compile


def test_a_compiled_run_checkpoints_plain_names_that_eval_loads(tmp_path: Path) -> None:
    compiled = [*SHORT, "model.compile=true", "model.compile_backend=aot_eager"]
    check_ok(run_cli("litforge.train", compiled, tmp_path))
    (run,) = run_dirs(tmp_path)
    assert "torch.compile: CNN compiled with backend aot_eager" in (run / "train.log").read_text()
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    state = torch.load(best, weights_only=True)["state_dict"]
    assert state and not [key for key in state if "_orig_mod" in key]
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}", "trainer.limit_test_batches=2"], tmp_path)
    check_ok(proc)
    (evaluated,) = run_dirs(tmp_path, "eval")
    trained = json.loads((run / "metrics.json").read_text())
    tested = json.loads((evaluated / "metrics.json").read_text())
    assert tested["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert "torch.compile" not in (evaluated / "eval.log").read_text()


# the graphs a compiled task hands to the backend, by the test that compiled it
GRAPHS: list[str] = []


def recording_backend(graph: torch.fx.GraphModule, example_inputs: list) -> object:
    GRAPHS.append(graph.__class__.__name__)
    return graph.forward


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=diabetes_mlp"],
        ["experiment=breast_cancer_mlp"],
        [*TEXT, "data.batch_size=16"],
        [
            "experiment=ner_offline",
            "data.num_sentences=200",
            "data.vocab_size=300",
            "data.max_length=24",
            *TINY_BACKBONE,
        ],
        ["experiment=mlm_offline", "data.num_examples=300", "data.vocab_size=200", *TINY_BACKBONE],
    ],
    ids=["image", "regression", "tabular", "text", "ner", "mlm"],
)
def test_every_task_trains_compiled(overrides: list[str], tmp_path: Path) -> None:
    from torch._dynamo import register_backend

    from litforge.train import train

    if "litforge_recording" not in torch.compiler.list_backends(exclude_tags=()):
        register_backend(recording_backend, name="litforge_recording")
    GRAPHS.clear()
    options = ["model.compile=true", "model.compile_backend=litforge_recording", *QUIET, "test=false"]
    # one training step, no validation: each graph the backend gets costs a second or more of tracing
    options += ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=0"]
    cfg = compose_config([*overrides, *options, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path)
    metrics = train(cfg)
    assert GRAPHS, "the task's network was not compiled"
    assert metrics["last/train/loss_epoch"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize(
    "preset", ["fsdp", pytest.param("deepspeed", marks=pytest.mark.skipif(not HAS_DEEPSPEED, reason="needs deepspeed"))]
)
def test_sharded_training_on_one_gpu_then_eval(preset: str, tmp_path: Path) -> None:
    overrides = [*TEXT, *SHORT, f"trainer={preset}", "trainer.devices=1", f"paths.data_dir={tmp_path / 'data'}"]
    # the Hugging Face export reads the best checkpoint as a file, which DeepSpeed's is not
    overrides += ["model.export_dir=null"] if preset == "deepspeed" else []
    check_ok(run_cli("litforge.train", overrides, tmp_path))
    (run,) = run_dirs(tmp_path)
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    if preset == "deepspeed":
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        convert_zero_checkpoint_to_fp32_state_dict(best, tmp_path / "best_fp32.ckpt")
        best = tmp_path / "best_fp32.ckpt"
    assert best.is_file()
    check_ok(run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}", "trainer=gpu"], tmp_path))
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert "test/acc" in json.loads((evaluated / "metrics.json").read_text())
