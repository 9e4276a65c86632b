"""The machine's own conf/local/default.yaml, as users get it wrong: a file without the
`# @package _global_` line, and one that is not valid YAML. Each test writes its local config into
a config folder of its own (`--config-dir`), never into the repository's conf/."""

from pathlib import Path

import pytest

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

TINY = [
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def _config_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "my_conf"
    (folder / "local").mkdir(parents=True)
    (folder / "local" / "default.yaml").write_text(text)
    return folder


def test_a_local_config_without_the_package_line_is_reported_and_with_it_applies(tmp_path: Path) -> None:
    settings = "trainer:\n  max_epochs: 3\n"
    folder = _config_dir(tmp_path, settings)
    proc = run_cli("litforge.train", [f"--config-dir={folder}", *TINY], tmp_path)
    check_ok(proc)
    assert (
        f"{folder / 'local' / 'default.yaml'} has no `# @package _global_` first line, so its keys (trainer) "
        "sit under `local.`"
    ) in proc.stdout

    (folder / "local" / "default.yaml").write_text(f"# @package _global_\n{settings}")
    proc = run_cli("litforge.train", [f"--config-dir={folder}", "--cfg", "job"], tmp_path)
    check_ok(proc)
    assert "max_epochs: 3" in proc.stdout and "\nlocal:" not in proc.stdout


@pytest.mark.parametrize("module", ["litforge.train", "litforge.eval"])
def test_a_local_config_that_is_not_yaml_is_refused_with_its_line_and_column(module: str, tmp_path: Path) -> None:
    folder = _config_dir(tmp_path, "# @package _global_\ntrainer:\n  max_epochs: 3\n   devices: [1\n")
    proc = run_cli(module, [f"--config-dir={folder}", *QUIET, "ckpt_path=missing.ckpt"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"Error: {folder / 'local' / 'default.yaml'}, line 4, column 11: not valid YAML (mapping values are not allowed"
    )
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not run_dirs(tmp_path, module.removeprefix("litforge."))
