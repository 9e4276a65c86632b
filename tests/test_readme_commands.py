"""Every `python -m litforge.train|eval|predict|serve` command the README shows composes (`--cfg job`), and the
offline training commands among them run a fast dev run: the README never shows a command that
does not work. Its placeholders (`my.csv`, `~/pictures`, `<run>`) become files like a user's."""

import re
import shlex
from pathlib import Path

import pytest

from litforge.utils.config import PROJECT_ROOT
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs
from tests.user_files import (
    conll_file,
    corpus_txt,
    houses_csv,
    png_tree,
    reviews_csv,
    split_png_tree,
    weather_csv,
    word_vectors_txt,
)

README = PROJECT_ROOT / "README.md"
INLINE = re.compile(
    r"`((?:\.venv/bin/)?python -m litforge\.(?:train|eval|predict|serve)[^`]*|make train ARGS=\"[^\"`]*\")`"
)
OFFLINE_SOURCES = {"digits", "diabetes", "folder", "file", "files", "generated"}


def readme_commands() -> list[str]:
    """Command lines in the README's code blocks and inline code, comments stripped."""
    found, fenced = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        code = line.strip() if fenced or line.startswith("    ") else ""
        if code.startswith((".venv/bin/python -m litforge", "python -m litforge", "make train ARGS=")):
            found.append(code)
        elif not fenced:
            found += INLINE.findall(line)
    return sorted(set(found))


def as_argv(command: str) -> tuple[str, list[str]]:
    """(module, arguments) of a README command, as the shell would pass them."""
    words = [w for w in shlex.split(command, comments=True) if w != "[overrides]"]
    if words[0] == "make":
        return "litforge.train", shlex.split(words[2].partition("=")[2])
    return words[2], words[3:]


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_entry_point() -> None:
    modules = {as_argv(c)[0] for c in COMMANDS}
    assert modules == {"litforge.train", "litforge.eval", "litforge.predict", "litforge.serve"} and len(COMMANDS) > 20


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """README placeholder -> a real path: user-like files, and a finished run to resume or evaluate."""
    root = tmp_path_factory.mktemp("readme")
    logs = root / "logs"
    check_ok(run_cli("litforge.train", [*QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2"], logs))
    (run,) = run_dirs(logs)
    return {
        "$HOME/new_pictures": str(png_tree(root / "new_pictures", seed=1)),
        "$HOME/pictures": str(png_tree(root / "pictures")),
        "/data/pictures": str(png_tree(root / "data_pictures")),
        "/data/pets": str(split_png_tree(root / "pets")),
        "my.csv": str(houses_csv(root / "my.csv")),
        "my.conll": str(conll_file(root / "my.conll", scheme="bioes")),
        "corpus.txt": str(corpus_txt(root / "corpus.txt")),
        "reviews.csv": str(reviews_csv(root / "reviews.csv")),
        "weather.csv": str(weather_csv(root / "weather.csv")),
        "$PWD": str(PROJECT_ROOT),
        "glove.6B.100d.txt": str(word_vectors_txt(root / "glove.6B.100d.txt")),
        "logs/train/runs/<run>": str(run),
        "<run>": str(run),
        "<file.ckpt>": str(run / "checkpoints" / "last.ckpt"),
        "<best.ckpt>": str(next((run / "checkpoints").glob("best_*.ckpt"))),
        # a folder written by save_pretrained: composed here, run in tests/tasks/test_hf_backbone_cli.py
        "<saved_bert_folder>": str(root / "saved_bert"),
    }


def substituted(args: list[str], placeholders: dict[str, str]) -> list[str]:
    """Placeholders replaced, then a `key=<glob>` expanded as the shell would (kept when nothing matches)."""
    out = []
    for arg in args:
        for name, path in placeholders.items():
            arg = arg.replace(name, path)
        key, sep, value = arg.partition("=")
        if sep and "*" in value and Path(value).is_absolute():
            matches = sorted(Path("/").glob(value.lstrip("/")))
            arg = f"{key}={matches[0]}" if matches else arg
        out.append(arg)
    return out


def as_single_run(args: list[str]) -> list[str]:
    """A multirun's arguments as one job's: `-m` dropped, each swept `a,b` value its first choice
    (a list `[a,b]` or a function `choice(a,b)` is one value)."""
    if "-m" not in args:
        return args
    single = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if arg == "-m":
            continue
        swept = sep and "," in value and not any(c in value for c in "([")
        single.append(f"{key}={value.split(',')[0]}" if swept else arg)
    return single


@pytest.mark.parametrize("command", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_command_composes(command: str, placeholders: dict[str, str], tmp_path: Path) -> None:
    module, args = as_argv(command)
    args = as_single_run(substituted(args, placeholders))
    assert not [a for a in args if "<" in a], f"a placeholder this test does not know: {args}"
    if not any(a.startswith(("-", "resume=", "hydra")) for a in args):
        # plain overrides compose in this process, as Hydra would compose them for the command line
        compose_config(args, config_name=module.rpartition(".")[2], log_dir=tmp_path)
        return
    if "--help" not in args and "--cfg" not in args:
        args = ["--cfg", "job", *args]
    proc = run_cli(module, args, tmp_path)
    check_ok(proc)
    assert "Traceback" not in proc.stderr


def offline_training(command: str, placeholders: dict[str, str], tmp_path: Path) -> list[str] | None:
    """The overrides of a README training command that runs here (no hub, no GPU, one job), else None."""
    module, args = as_argv(command)
    if module != "litforge.train" or any(a.startswith(("-", "resume=")) for a in args):
        return None
    overrides = substituted(args, placeholders)
    cfg = compose_config(overrides, log_dir=tmp_path)
    backbone = cfg.model.get("backbone") or {}
    pretrained = backbone.get("pretrained_model_name_or_path")
    if cfg.data.get("source") not in OFFLINE_SOURCES or cfg.trainer.accelerator in ("gpu", "cuda", "mps"):
        return None
    if pretrained and not Path(pretrained).is_dir():
        return None
    return overrides


TRAINING = [c for c in COMMANDS if as_argv(c)[0] == "litforge.train"]


@pytest.mark.parametrize("command", TRAINING, ids=range(len(TRAINING)))
def test_offline_readme_training_command_runs(command: str, placeholders: dict[str, str], tmp_path: Path) -> None:
    from litforge.train import train

    overrides = offline_training(command, placeholders, tmp_path)
    if overrides is None:
        pytest.skip("needs the hub, a GPU, a sweep or a run to resume: composed only")
    cfg = compose_config([*overrides, "debug=fdr", *QUIET, f"paths.data_dir={tmp_path / 'data'}"], log_dir=tmp_path)
    metrics = train(cfg)
    assert any(k.startswith("test/") for k in metrics), metrics
