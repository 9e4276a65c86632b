"""The tabular data module: column choice, scaling from the training split, state, bad tables."""

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pandas as pd
import pytest
import torch

from litforge.data.tabular import sources as tabular_sources
from litforge.data.tabular.regression import TabularDataModule
from litforge.utils.errors import UserError


def write_table(tmp_path: Path, rows: int = 40, name: str = "table.csv") -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(5, 2, rows), "b": rng.normal(-3, 10, rows), "city": ["x"] * rows})
    frame["y"] = 2 * frame.a - frame.b + rng.normal(0, 0.1, rows)
    frame["z"] = frame.a + 100
    path = tmp_path / name
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def file_module(path: Path, **kwargs) -> TabularDataModule:
    module = TabularDataModule(source="file", path=str(path), **{"target": "y", **kwargs})
    module.setup("fit")
    return module


def scaled(module: TabularDataModule, split: str) -> torch.Tensor:
    return module.on_after_batch_transfer(module.splits[split].tensors, 0)[0]


def test_statistics_come_from_the_training_split_only() -> None:
    module = TabularDataModule(source="diabetes", batch_size=32)
    module.setup("fit")
    train_x, train_y = module.splits["train"].tensors
    everything = torch.cat([module.splits[s].tensors[0] for s in ("train", "val", "test")])
    assert torch.allclose(module.stats["feature_mean"], train_x.mean(dim=0))
    assert not torch.allclose(module.stats["feature_mean"], everything.mean(dim=0))
    assert torch.allclose(module.stats["target_std"], train_y.std(dim=0))
    x = scaled(module, "train")
    assert torch.allclose(x.mean(dim=0), torch.zeros(10), atol=1e-4)
    assert torch.allclose(x.std(dim=0), torch.ones(10), atol=1e-4)
    kwargs = module.model_kwargs()
    assert kwargs["feature_names"][:3] == ["age", "sex", "bmi"] and kwargs["target_names"] == ["target"]
    assert kwargs["target_mean"] == pytest.approx([float(train_y.mean())])


def test_restored_state_wins_over_the_data(tmp_path: Path) -> None:
    """eval.py restores the checkpoint's state before setup: those statistics and columns are used."""
    trained = file_module(write_table(tmp_path), features=["b", "a"])
    state = trained.state_dict()
    fresh = TabularDataModule(source="file", path=str(write_table(tmp_path, rows=60, name="other.csv")), target="y")
    fresh.load_state_dict(state)
    fresh.setup("test")
    assert fresh.feature_names == ["b", "a"]
    assert torch.equal(fresh.stats["feature_mean"], state["feature_mean"])


@pytest.mark.parametrize("name", ["table.csv", "table.parquet"])
def test_default_features_and_several_targets(name: str, tmp_path: Path) -> None:
    module = file_module(write_table(tmp_path, name=name), target=["y", "z"])
    assert module.feature_names == ["a", "b"]
    assert module.target_names == ["y", "z"]
    assert module.splits["train"].tensors[1].shape[1] == 2
    assert len(module.splits["train"]) + len(module.splits["val"]) + len(module.splits["test"]) == 40


def test_scaling_can_be_turned_off(tmp_path: Path) -> None:
    module = file_module(write_table(tmp_path), scale_features=False, scale_target=False)
    assert torch.equal(scaled(module, "val"), module.splits["val"].tensors[0])
    assert module.model_kwargs()["target_std"] == [1.0]


def with_gaps(tmp_path: Path) -> Path:
    path = write_table(tmp_path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[0], "", 1)
    lines[5] = lines[5].replace(lines[5].split(",")[1], "inf", 1)
    lines.insert(7, "")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_drop_na_drops_incomplete_rows(tmp_path: Path) -> None:
    module = file_module(with_gaps(tmp_path), drop_na=True)
    assert sum(len(s) for s in module.splits.values()) == 38


@pytest.mark.parametrize("impute", ["mean", "median"])
def test_impute_fills_features_from_the_training_split(impute: str, tmp_path: Path) -> None:
    module = file_module(with_gaps(tmp_path), impute=impute)
    train = module.splits["train"].tensors[0]
    expected = train.nanmean(dim=0) if impute == "mean" else train.nanmedian(dim=0).values
    assert torch.allclose(module.stats["fill"], expected)
    assert sum(int(s.tensors[0].isnan().any(dim=1).sum()) for s in module.splits.values()) == 2
    assert all(scaled(module, s).isfinite().all() for s in module.splits)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("", {}, "the file is empty"),
        ("a,b,y\n", {}, "has no data rows"),
        ("a,b,y\n1,2,3\n", {"target": "price"}, "no column 'price'"),
        ("a,b,y\n1,2,3\n", {"features": ["a", "c"]}, "no column 'c'"),
        ("a,b,y\n1,2,3\n", {"features": ["a", "y"]}, "lists the target"),
        ("a,b,y\n1,2,3\n4,oops,6\n", {}, "column 'b' of data.path=%s is not numeric: line 3 of the file holds 'oops'"),
        ("a,b,y\n1,2,3\n\n4,,6\n", {}, "column 'b' of data.path=%s has a missing (empty or NaN) value in line 4 "),
        ("a,b,y\n1,inf,3\n", {}, "an infinite (inf) value in line 2 of the file"),
        ("a,b,y\n1,2,\n", {"impute": "mean"}, "column 'y' of data.path=%s has a missing"),
        ("a,b,y\n1,2,3\n4,5,6\n", {}, "2 usable rows are too few"),
    ],
)
def test_bad_tables_are_refused_by_column_and_row(content: str, kwargs: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        file_module(path, **kwargs)
    assert message.replace("%s", str(path)) in str(err.value)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    for kwargs, message in [
        ({"source": "sql"}, "data.source='sql'"),
        ({"impute": "zero"}, "data.impute='zero'"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "together below 1"),
    ]:
        with pytest.raises(UserError, match=message):
            TabularDataModule(**kwargs)
    with pytest.raises(UserError, match="unknown file type '.xlsx'"):
        tabular_sources.load_file(str(write_table(tmp_path, name="table.xlsx")))


def test_california_offline_names_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr("sklearn.datasets.fetch_california_housing", offline)
    with pytest.raises(UserError, match=f"data.data_dir={tmp_path}.*needs internet once"):
        tabular_sources.load_california(str(tmp_path))
