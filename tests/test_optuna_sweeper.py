"""The Optuna sweeper plugin: search spaces from Hydra's sweep syntax, and every search config."""

import math

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.litforge_optuna_sweeper.optuna_sweeper import (
    OptunaSweeper,
    distribution_of,
    normalise_direction,
    override_value,
)
from litforge.utils.config import CONFIG_DIR

PARSER = OverridesParser.create()


def parse(line: str):
    return PARSER.parse_override(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a=choice(relu, gelu)", CategoricalDistribution(["relu", "gelu"])),
        ("a=1,2,3", CategoricalDistribution([1, 2, 3])),
        ("a=interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("a=tag(log, interval(1e-5, 1e-2))", FloatDistribution(1e-5, 1e-2, log=True)),
        ("a=int(interval(8, 64))", IntDistribution(8, 64)),
        ("a=tag(log, int(interval(8, 256)))", IntDistribution(8, 256, log=True)),
        ("a=range(1, 10, 2)", IntDistribution(1, 9, step=2)),
        ("a=range(10, 0, -5)", IntDistribution(5, 10, step=5)),
        ("a=range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
    ],
)
def test_sweep_syntax_becomes_optuna_distributions(line: str, expected) -> None:
    got = distribution_of(parse(line))
    assert type(got) is type(expected)
    if isinstance(expected, CategoricalDistribution):
        assert got.choices == expected.choices
    else:
        assert math.isclose(got.low, expected.low) and math.isclose(got.high, expected.high)
        assert got.log == expected.log and got.step == pytest.approx(expected.step)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a=glob(*)", "searches choice(...), a,b,c, range(...) and interval(...)"),
        ("a=range(5, 5)", "holds no value"),
        ("a=interval(1.0, 0.5)", "needs start < end"),
        ("a=tag(log, interval(0.0, 1.0))", "needs start > 0"),
        ("a=choice([1,2],[3])", "choice values must be numbers, strings, booleans or null"),
    ],
)
def test_search_spaces_optuna_cannot_search_are_named(line: str, message: str) -> None:
    # ValueError: Hydra's plugin scan may load a second copy of the module and its error class
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        distribution_of(parse(line))


@pytest.mark.parametrize("value", [None, True, False, 3, -2, 0.1, 1e-05, "relu", "1.0", "a b", "it's", "x,y", "null"])
def test_sampled_values_read_back_unchanged(value) -> None:
    assert parse(f"k={override_value(value, PARSER)}").value() == value


def test_direction_follows_a_monitor_mode() -> None:
    assert normalise_direction("max") == ["maximize"]
    assert normalise_direction(["min", "maximize"]) == ["minimize", "maximize"]
    with pytest.raises(ValueError, match="direction=up: give maximize|minimize"):
        normalise_direction("up")


def optuna_searches() -> list[str]:
    return sorted(
        p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml") if "hydra/sweeper: optuna" in p.read_text()
    )


@pytest.mark.parametrize("name", optuna_searches())
def test_every_optuna_search_samples_configs_that_compose(name: str) -> None:
    """Each search config instantiates the sweeper with the task's direction, and a sampled
    trial's overrides compose: a renamed key would otherwise fail only inside a sweep."""
    assert len(optuna_searches()) >= 5
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={name}"], return_hydra_config=True)
        sweeper = Plugins.instance()._instantiate(cfg.hydra.sweeper)
        assert type(sweeper).__name__ == OptunaSweeper.__name__  # Hydra loads plugin modules on its own
        assert sweeper.directions == [{"max": "maximize", "min": "minimize"}[cfg.model.mode]]
        space = {key: distribution_of(parse(f"{key}={value}")) for key, value in sweeper.params.items()}
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask(space)
        overrides = [f"{key}={override_value(trial.params[key], PARSER)}" for key in space]
        sampled = compose("train", overrides=[f"hparams_search={name}", *overrides])
    for key, value in trial.params.items():
        if "/" not in key:
            node = sampled
            for part in key.lstrip("+").split("."):
                node = node[part]
            assert node == value, key
