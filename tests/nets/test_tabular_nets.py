"""The tabular nets (MLP with categorical embeddings, ResMLP, FT-Transformer): shapes, learning on mixed
numeric/categorical input, numeric-only input, training through the regressor and from the command line."""

import json
from pathlib import Path

import hydra
import lightning.pytorch as L
import pytest
import torch
from torch import nn

from litforge.assembly import instantiate_task
from litforge.nets import MLP, FTTransformer, ResMLP
from litforge.nets.embeddings import embedding_dim_for
from litforge.nets.init import init_weights
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

CARDINALITIES = [4, 7]
# small, dropout-free versions that learn a batch quickly
NETS = {
    "mlp": lambda n, out, cards: MLP(n, out, hidden_sizes=[64, 64], cardinalities=cards),
    "resmlp": lambda n, out, cards: ResMLP(n, out, width=32, num_blocks=2, dropout=0.0, cardinalities=cards),
    "ft_transformer": lambda n, out, cards: FTTransformer(
        n, out, d_token=16, num_blocks=1, num_heads=2, dropout=0.0, cardinalities=cards
    ),
}


def mixed_batch(rows: int = 32, numeric: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, numeric, generator=generator)
    codes = [torch.randint(0, c, (rows,), generator=generator) for c in CARDINALITIES]
    return x, torch.stack(codes, dim=1)


def fitted_loss(net: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor, steps: int = 100) -> float:
    """The loss after `steps` Adam steps on one batch, as a fraction of the loss before."""
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(steps + 1):
        loss = nn.functional.mse_loss(net(*inputs), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses[-1] / losses[0]


@pytest.mark.parametrize("name", list(NETS))
def test_mixed_input_shapes_and_overfit(name: str) -> None:
    torch.manual_seed(0)
    x, x_cat = mixed_batch()
    net = NETS[name](x.shape[1], 3, CARDINALITIES)
    assert net(x, x_cat).shape == (32, 3)
    y = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    assert fitted_loss(net, (x, x_cat), y) < 0.05


@pytest.mark.parametrize("name", list(NETS))
def test_categorical_only_input_is_learned(name: str) -> None:
    """With no numeric column (x is [B, 0]) the target depends on the codes alone."""
    torch.manual_seed(0)
    _, x_cat = mixed_batch()
    y = (torch.tensor([0.0, 1.0, -1.0, 2.0])[x_cat[:, 0]] - torch.linspace(-1, 1, 7)[x_cat[:, 1]]).unsqueeze(1)
    net = NETS[name](0, 1, CARDINALITIES)
    assert fitted_loss(net, (torch.empty(32, 0), x_cat), y) < 0.05


@pytest.mark.parametrize("name", list(NETS))
def test_numeric_only_input_and_wiring_slips(name: str) -> None:
    x, x_cat = mixed_batch(rows=6)
    net = NETS[name](5, 2, [])
    init_weights(net, "kaiming")
    assert net(x).shape == net(x, None).shape == (6, 2)
    with pytest.raises(ValueError, match="built without categorical columns"):
        net(x, x_cat)
    with pytest.raises(ValueError, match="call net\\(x, x_cat\\)"):
        NETS[name](5, 2, CARDINALITIES)(x)
    with pytest.raises(ValueError, match="expected \\[6, 2\\]"):
        NETS[name](5, 2, CARDINALITIES)(x, x_cat[:, :1])


def test_embedding_sizes_and_image_input() -> None:
    assert [embedding_dim_for(c) for c in (2, 3, 10, 100, 100_000)] == [2, 3, 6, 21, 50]
    mlp = MLP(5, 1, hidden_sizes=[8], cardinalities=[3, 100], embedding_dim=4)
    assert mlp.layers[1].in_features == 5 + 4 + 4
    # no categorical columns: the same layers, so older MLP checkpoints load
    keys = ["layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.4.bias"]
    assert list(MLP([1, 8, 8], 10, hidden_sizes=[8]).state_dict()) == keys
    images = torch.randn(2, 1, 8, 8)
    assert ResMLP([1, 8, 8], 10)(images).shape == FTTransformer([1, 8, 8], 10)(images).shape == (2, 10)
    with pytest.raises(ValueError, match="d_token=30 is not a multiple of num_heads=8"):
        FTTransformer(4, 1, d_token=30)
    with pytest.raises(ValueError, match="norm='group'"):
        ResMLP(4, 1, norm="group")


@pytest.mark.parametrize(
    ("experiment", "tiny"),
    [
        ("diabetes_resmlp", ["model.net.width=16"]),
        ("diabetes_ft_transformer", ["model.net.d_token=16", "model.net.num_blocks=1", "model.net.num_heads=2"]),
    ],
)
def test_regressor_trains_each_net_in_process(experiment: str, tiny: list[str], tmp_path: Path) -> None:
    cfg = compose_config([f"experiment={experiment}", "data.batch_size=64", *tiny], log_dir=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate_task(cfg.model, datamodule.model_kwargs())
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert 20 < metrics["test/rmse"] < 200


def test_an_mlp_key_on_another_net_is_refused_by_name(tmp_path: Path) -> None:
    cfg = compose_config(["experiment=diabetes_mlp", "model/net=ft_transformer"], log_dir=tmp_path)
    kwargs = {"feature_names": ["a", "b"], "target_names": ["y"]}
    with pytest.raises(UserError, match="unexpected keyword argument 'hidden_sizes'"):
        instantiate_task(cfg.model, kwargs)
    cfg = compose_config(["experiment=diabetes_ft_transformer", "model.net.d_token=30"], log_dir=tmp_path)
    with pytest.raises(UserError, match="d_token=30 is not a multiple of num_heads=8"):
        instantiate_task(cfg.model, kwargs)


def test_ft_transformer_from_the_command_line(tmp_path: Path) -> None:
    tiny = ["model.net.d_token=16", "model.net.num_blocks=1", "model.net.num_heads=2", "trainer.max_epochs=2"]
    check_ok(run_cli("litforge.train", [*QUIET, "experiment=diabetes_ft_transformer", *tiny], tmp_path))
    (run,) = run_dirs(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/rmse", "test/r2"} <= set(metrics)
