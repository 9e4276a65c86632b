"""The tabular classification data module and the categorical columns both tabular modules read:
classes, codes, one-hot and embedding inputs, missing values, unknown categories, bad tables."""

import logging
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pandas as pd
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.data.splits import split_indices
from litforge.data.tabular.classification import TabularClassificationDataModule
from litforge.data.tabular.regression import TabularDataModule
from litforge.utils.errors import UserError
from tests.helpers import compose_config

COLOURS = ["red", "green", "blue"]
EMB = "embedding"


def shop_table(path: Path, rows: int = 60, seed: int = 0) -> Path:
    """An ID and a date column, a text column with gaps, a numeric one with gaps, a Yes/No target."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(COLOURS, rows).astype(object)
    colour[::7] = None
    size = rng.normal(10, 3, rows)
    size[3::11] = np.nan
    frame = pd.DataFrame(
        {
            "order_id": np.arange(500, 500 + rows),
            "day": pd.date_range("2024-01-01", periods=rows).strftime("%Y-%m-%d"),
            "colour": colour,
            "size": size.round(2),
            "bought": np.where((size > 10) ^ (colour == "red"), "Yes", "No"),
        }
    )
    frame.to_csv(path, index=False)
    return path


def module(path: Path, **kwargs) -> TabularClassificationDataModule:
    dm = TabularClassificationDataModule(source="file", path=str(path), **{"target": "bought", **kwargs})
    dm.setup("fit")
    return dm


def test_text_columns_become_codes_ids_and_dates_are_dropped(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        dm = module(shop_table(tmp_path / "shop.csv"), impute="mean", missing_indicator=True, categorical_encoding=EMB)
    assert "dropped ID-like column(s) ['order_id']" in caplog.text
    assert "dropped date-like column(s) ['day']" in caplog.text
    assert (dm.feature_names, dm.categorical_names, dm.class_names) == (["size"], ["colour"], ["No", "Yes"])
    assert dm.vocabularies == [sorted(COLOURS)]
    x, codes, y = dm.splits["train"].tensors
    assert codes.dtype == torch.int64 and y.dtype == torch.int64 and set(codes[:, 0].tolist()) <= {0, 2, 3, 4}
    assert (codes == 0).any(), "a missing colour is its own code"
    inputs = dm.on_after_batch_transfer((x, codes, y), 0)
    assert len(inputs) == 3 and inputs[0].shape == (len(y), 2) and inputs[0].isfinite().all()
    assert torch.equal(inputs[0][:, 1], x[:, 0].isnan().float()), "the missing-indicator input"
    kwargs = dm.model_kwargs()
    assert kwargs["feature_names"] == ["size", "size missing"] and kwargs["cardinalities"] == [5]
    assert sum(kwargs["class_counts"]) == len(y) and kwargs["class_names"] == ["No", "Yes"]


def test_onehot_expands_categories_into_inputs(tmp_path: Path) -> None:
    dm = module(shop_table(tmp_path / "shop.csv"), impute="median")
    x, codes, y = dm.splits["val"].tensors
    (inputs, _) = dm.on_after_batch_transfer((x, codes, y), 0)
    names = dm.model_kwargs()["feature_names"]
    assert names == ["size", "colour=<missing>", "colour=<unknown>", "colour=blue", "colour=green", "colour=red"]
    assert "cardinalities" not in dm.model_kwargs() and inputs.shape == (len(y), 6)
    assert torch.equal(inputs[:, 1:].sum(dim=1), torch.ones(len(y)))


def test_unknown_categories_at_predict_are_counted_not_refused(tmp_path: Path, caplog) -> None:
    trained = module(shop_table(tmp_path / "shop.csv"), impute="mean", categorical_encoding=EMB)
    new = tmp_path / "new.csv"
    new.write_text("colour,size\nred,3\npurple,4\n,5\npurple,\n")
    fresh = TabularClassificationDataModule(
        source="file", path="gone.csv", target="bought", impute="mean", predict_path=str(new)
    )
    fresh.load_state_dict(trained.state_dict())
    with caplog.at_level(logging.INFO):
        fresh.setup("predict")
    batch = fresh.predict_inputs.__getitems__([0, 1, 2, 3])
    assert batch["id"] == ["0", "1", "2", "3"] and batch["inputs"][1][:, 0].tolist() == [4, 1, 0, 1]
    assert "2 value(s) of column 'colour' not seen in training, read as unknown: ['purple']" in caplog.text


def test_sklearn_sets_have_named_classes() -> None:
    dm = TabularClassificationDataModule(source="wine", batch_size=16)
    dm.setup("fit")
    assert dm.class_names == ["class_0", "class_1", "class_2"] and len(dm.feature_names) == 13
    cancer = TabularClassificationDataModule(source="breast_cancer")
    cancer.setup("fit")
    assert cancer.class_names == ["benign", "malignant"] and not cancer.categorical_names


def test_generated_table_is_the_same_for_the_same_seed() -> None:
    first, second, other = (
        TabularClassificationDataModule(
            source="generated", num_rows=200, split_seed=seed, target="churned", impute="mean"
        )
        for seed in (3, 3, 4)
    )
    for dm in (first, second, other):
        dm.setup("fit")
    assert torch.equal(first.splits["train"].tensors[1], second.splits["train"].tensors[1])
    assert not torch.equal(first.splits["train"].tensors[2], other.splits["train"].tensors[2])
    assert first.categorical_names == ["plan", "region", "payment"]


def test_regression_reads_categories_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "houses.csv"
    rng = np.random.default_rng(1)
    town = rng.choice(["a", "b", "c"], 40)
    price = rng.normal(0, 1, 40) + (town == "a") * 3
    pd.DataFrame({"rooms": rng.integers(1, 5, 40), "town": town, "price": price}).to_csv(path, index=False)
    plain = TabularDataModule(source="file", path=str(path), target="price")
    plain.setup("fit")
    assert plain.feature_names == ["rooms"] and not plain.categorical_names
    coded = TabularDataModule(source="file", path=str(path), target="price", categorical="auto")
    coded.setup("fit")
    assert coded.model_kwargs()["feature_names"][1:] == [
        "town=<missing>",
        "town=<unknown>",
        "town=a",
        "town=b",
        "town=c",
    ]


TWO_CLASSES = pd.DataFrame({"x": range(20), "bought": ["Yes", "No"] * 10})


def write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"x": range(20), "bought": ["Yes"] * 20}), {}, "has only the class 'Yes'"),
        (
            pd.DataFrame({"x": np.arange(300) / 7, "bought": np.arange(300) * 1.5}),
            {},
            "holds 300 distinct numbers (e.g. 0.0, 1.5, 3.0): a quantity to predict, not classes (at most 50). "
            "Use regression: model=regressor",
        ),
        (
            pd.DataFrame({"code": [f"c{i}" for i in range(20)], "x": range(20), "bought": ["Yes", "No"] * 10}),
            {"categorical": ["code"]},
            "categorical column 'code' of data.path=%s has 20 distinct values in 20 rows (e.g. 'c0'): at most 10",
        ),
        (
            pd.DataFrame({"x": range(20), "bought": ["Yes", "No"] * 10}),
            {"categorical": ["colour"]},
            "no column 'colour'",
        ),
        (
            pd.DataFrame({"x": range(20), "bought": ["Yes", "No"] * 10}),
            {"missing_indicator": True},
            "data.impute is null",
        ),
    ],
)
def test_bad_tables_are_refused_naming_the_column(frame, kwargs: dict, message: str, tmp_path: Path) -> None:
    path = write(tmp_path, frame)
    with pytest.raises(UserError) as err:
        module(path, **kwargs)
    assert message.replace("%s", str(path)) in str(err.value)


def test_a_class_only_in_validation_or_test_is_refused_naming_its_line(tmp_path: Path) -> None:
    labels = ["Yes", "No"] * 20
    # a row the module's split (seed 42) puts into validation
    row = int(split_indices(40, [0, 0.15, 0.15], 42)[1][0])
    labels[row] = "Maybe"
    path = write(tmp_path, pd.DataFrame({"x": range(40), "bought": labels}))
    with pytest.raises(UserError) as err:
        module(path)
    assert "class 'Maybe' of target column 'bought'" in str(err.value)
    assert f"only in the validation split (line {row + 2} of the file; 1 row(s) in all)" in str(err.value)


def test_regression_trains_and_predicts_on_category_embeddings(tmp_path: Path) -> None:
    path = tmp_path / "houses.csv"
    rng = np.random.default_rng(2)
    town = rng.choice(["a", "b", "c"], 60)
    frame = pd.DataFrame({"rooms": rng.integers(1, 5, 60), "town": town, "price": (town == "a") * 3.0})
    frame.to_csv(path, index=False)
    options = {"source": "file", "target": "price", "categorical": ["town"], "categorical_encoding": EMB}
    dm = TabularDataModule(path=str(path), batch_size=16, **options)
    dm.setup("fit")
    cfg = compose_config(["data=diabetes", "model=regressor", "model.net.hidden_sizes=[8]"], log_dir=tmp_path)
    model = instantiate_task(cfg.model, dm.model_kwargs())
    assert model.net.embeddings is not None and dm.model_kwargs()["cardinalities"] == [5]
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, **quiet)
    trainer.fit(model, datamodule=dm)
    (tmp_path / "new.csv").write_text("rooms,town\n2,a\n3,zzz\n")
    fresh = TabularDataModule(path="gone.csv", predict_path=str(tmp_path / "new.csv"), **options)
    fresh.load_state_dict(dm.state_dict())
    (batch,) = trainer.predict(model, datamodule=fresh)
    assert [record["id"] for record in batch] == ["0", "1"] and all(np.isfinite(r["prediction"]) for r in batch)


def test_split_rows_name_the_table_rows_of_each_split(tmp_path: Path) -> None:
    dm = module(shop_table(tmp_path / "shop.csv"), impute="mean")
    rows = dm.split_rows
    assert sorted(rows["train"] + rows["val"] + rows["test"]) == list(range(60))
    assert all(len(rows[name]) == len(dm.splits[name]) for name in ("train", "val", "test"))


def test_drop_leaves_out_columns_and_a_test_file_class_training_never_saw_is_refused(tmp_path: Path) -> None:
    dm = module(shop_table(tmp_path / "shop.csv"), impute="mean", drop=["size"])
    assert (dm.feature_names, dm.categorical_names) == ([], ["colour"])
    (tmp_path / "test.csv").write_text("colour,size,bought\nred,1,Yes\nblue,2,Maybe\n")
    fresh = TabularClassificationDataModule(
        source="file", path="gone.csv", target="bought", test_path=str(tmp_path / "test.csv")
    )
    fresh.load_state_dict(dm.state_dict())
    with pytest.raises(
        UserError, match="line 3 of the file holds the class 'Maybe', which the model was not trained on"
    ):
        fresh.setup("test")
