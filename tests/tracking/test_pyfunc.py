"""The best checkpoint as an MLflow model, as users serve it: trained with `logger=mlflow
logger.mlflow.log_model=true` and a registered name, then loaded with
`mlflow.pyfunc.load_model("models:/<name>/1")`, resolved back to its checkpoint, and served by
`mlflow models serve`; its predictions equal `litforge.predict`'s for the same inputs."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from litforge import predict as predict_cli
from litforge.train import train
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.errors import UserError
from tests.helpers import TINY_BACKBONE, compose_config
from tests.user_files import png_tree, weather_csv
from tests.utils import test_tracking
from tests.utils.test_tracking import TINY

# the real MLflow server of the tracking tests; asked for first, it boots while the models train
booting_server = test_tracking.booting_server
mlflow_server = test_tracking.mlflow_server

LOGGED = [*TINY, "logger=mlflow", "logger.mlflow.log_model=true"]
MODELS = {
    "digits": ["trainer.max_epochs=1"],
    "weather": [
        "data=tabular_classification_file", "model=tabular_classifier", "data.target=rain_tomorrow",
        "data.impute=mean", "trainer.max_epochs=1",
    ],
    "reviews": [
        "experiment=text_clf_offline", *TINY_BACKBONE, "data.num_examples=200", "data.vocab_size=150",
        "data.max_length=24", "trainer.max_epochs=1", "callbacks.lr_monitor=null",
    ],
}  # fmt: skip


class Trained:
    """One model trained with log_model and registered as `name`, in the local store at `uri`."""

    def __init__(self, root: Path, name: str, uri: str) -> None:
        self.name, self.root, self.uri = name, root, uri
        self.checkpoint = next((root / "logs" / "run" / "checkpoints").glob("best_*.ckpt"))
        self.run_id = json.loads((root / "logs" / "run" / "tracker_runs.json").read_text())["mlflow"]


def _train(root: Path, name: str, store: Path) -> Trained:
    """Its run directory under root/logs, the run in the store shared by every model here."""
    overrides = [*LOGGED, *MODELS[name], f"logger.mlflow.registered_model_name={name}"]
    overrides += [f"paths.data_dir={root / 'data'}", f"logger.mlflow.store_dir={store}"]
    if name == "weather":
        overrides.append(f"data.path={weather_csv(root / 'weather.csv')}")
    train(compose_config(overrides, log_dir=root / "logs"))
    return Trained(root, name, f"sqlite:///{store / 'mlflow.db'}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Trained]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = tmp_path_factory.mktemp("mlflow")
        yield {name: _train(tmp_path_factory.mktemp(name), name, store) for name in MODELS}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def store(trained: dict[str, Trained], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Selects a model's store as users do, with $MLFLOW_TRACKING_URI."""
    import mlflow

    def use(name: str) -> Trained:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", trained[name].uri)
        mlflow.set_tracking_uri(trained[name].uri)
        return trained[name]

    previous = mlflow.get_tracking_uri()
    yield use
    mlflow.set_tracking_uri(previous)


def test_a_server_that_does_not_answer_at_the_end_leaves_the_call_that_logs_the_model_later(
    booting_server: tuple, trained: dict[str, Trained], mlflow_server: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:  # fmt: skip
    from mlflow.tracking import MlflowClient

    from litforge.tracking.mlflow_run import MLflowRunLogger, log_checkpoint

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # a server just up is slow to answer first
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    logger = MLflowRunLogger(
        str(tmp_path / "mlflow"), mlflow_server, "outage", "a run", log_model=True, registered_model_name="rain"
    )
    run_id = logger.run_id
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    server = booting_server[0]
    start = time.monotonic()
    # stopped, the server takes connections and never answers
    os.killpg(server.pid, signal.SIGSTOP)
    try:
        log_checkpoint(logger, str(trained["weather"].checkpoint))
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    assert time.monotonic() - start < 30
    (warning,) = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert "was not logged as an MLflow model nor registered as model rain" in warning
    call = warning.split('python -c "', 1)[1].rstrip('"')
    assert f"{run_id!r}" in call and "registered_model_name='rain'" in call

    exec(call, {})  # what the user runs once the server answers again
    client = MlflowClient(mlflow_server)
    (version,) = client.search_model_versions("name='rain'")
    (output,) = client.get_run(run_id).outputs.model_outputs
    assert version.source == f"models:/{output.model_id}" and version.run_id == run_id


def _new_inputs(name: str, folder: Path) -> tuple[Path, pd.DataFrame]:
    """New inputs as a file for litforge.predict and as the DataFrame a pyfunc model takes."""
    folder.mkdir(parents=True)
    if name == "weather":
        table = pd.read_csv(weather_csv(folder / "full.csv", rows=14, seed=3)).drop(columns="rain_tomorrow")
        table.to_csv(folder / "new.csv", index=False)
        assert table["humidity"].isna().any()  # a gap the model imputes
        return folder / "new.csv", table
    if name == "reviews":
        texts = ["the film was great and moving", "dull , slow and far too long", "not bad at all"]
        (folder / "new.txt").write_text("\n".join(texts) + "\n")
        return folder / "new.txt", pd.DataFrame({"text": texts})
    files = sorted(png_tree(folder / "pictures", classes=("a", "b"), per_class=2).rglob("*.png"))
    return folder / "pictures", pd.DataFrame({"image": [base64.b64encode(f.read_bytes()).decode() for f in files]})


def _predicted(checkpoint: Path, given: Path, log_dir: Path) -> pd.DataFrame:
    """litforge.predict's records for `given`, as the pyfunc model's output frame (ids aside:
    predict names a file's inputs, the model numbers its rows)."""
    from litforge.tracking.pyfunc import records_frame

    cfg = compose_config(
        ["extras=quiet", "trainer=cpu", f"ckpt_path={checkpoint}", f"input={given}"], "predict", log_dir
    )
    records = predict_cli.predict(cfg, checkpoint, load_checkpoint(checkpoint))
    return records_frame(records).drop(columns="id")


@pytest.mark.parametrize("name", list(MODELS))
def test_the_registered_model_predicts_as_litforge_predict(name: str, store: Any, tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    model = store(name)
    client = MlflowClient(model.uri)
    (output,) = client.get_run(model.run_id).outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.name == "model" and logged.source_run_id == model.run_id
    (version,) = client.search_model_versions(f"name='{name}'")
    assert str(version.version) == "1" and version.source == logged.model_uri and version.run_id == model.run_id
    # the checkpoint travels inside the model, not as a separate artifact of the run
    assert not client.list_artifacts(model.run_id, "checkpoints")

    given, frame = _new_inputs(name, tmp_path / "inputs")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/1", model_config={"device": "cpu"})
    assert loaded.model_config == {"device": "cpu"}
    assert loaded.metadata.get_input_schema().input_names() == list(frame.columns)
    got = loaded.predict(frame)
    assert list(got["id"]) == [str(i) for i in range(len(frame))]
    pd.testing.assert_frame_equal(got.drop(columns="id"), _predicted(model.checkpoint, given, tmp_path / "logs"))


def test_resolve_model_uri_gives_the_checkpoint_of_every_uri_form(store: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from litforge.tracking.pyfunc import resolve_model_uri

    model = store("weather")
    MlflowClient(model.uri).set_registered_model_alias("weather", "champion", "1")
    uris = ["models:/weather/1", "models:/weather/latest", "models:/weather@champion", f"runs:/{model.run_id}/model"]
    for i, uri in enumerate(uris):
        path = resolve_model_uri(uri, dst_path=tmp_path / str(i))
        assert path.read_bytes() == model.checkpoint.read_bytes(), uri
        assert load_checkpoint(path)["litforge"]["config"]["data"]["target"] == "rain_tomorrow"
    # a model folder already on disk (what the downloads above wrote) is read where it is
    folder = path.parent.parent
    assert resolve_model_uri(str(folder)) == path


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/weather", "model_uri=models:/weather: not an MLflow model URI nor a folder; give models:/<name>/"),
        ("s3://bucket/model", "model_uri=s3://bucket/model: not an MLflow model URI"),
        ("models:/weather/7", "model_uri=models:/weather/7: cannot download it from sqlite:///"),
        ("models:/nobody/1", "model_uri=models:/nobody/1: cannot download it from"),
    ],
)
def test_a_bad_model_uri_is_refused_naming_it(uri: str, message: str, store: Any) -> None:
    from litforge.tracking.pyfunc import resolve_model_uri

    store("weather")
    with pytest.raises(UserError) as err:
        resolve_model_uri(uri)
    assert message in str(err.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# 15-25 s on two shared cores, most of it the server's start
@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_records(trained: dict[str, Trained], tmp_path: Path) -> None:
    model = trained["weather"]
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/weather/1", "--env-manager", "local",
        "-p", str(port), "-h", "127.0.0.1", "--workers", "1",
    ]  # fmt: skip
    # as in an activated environment: MLflow starts the `uvicorn` it finds on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": model.uri, "OMP_NUM_THREADS": "1", "PATH": path}
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        given, frame = _new_inputs("weather", tmp_path / "inputs")
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer in 60 s"
                time.sleep(0.5)
    finally:
        os.killpg(server.pid, 9)
        server.wait()
    got = pd.DataFrame(answer["predictions"]).drop(columns="id")
    pd.testing.assert_frame_equal(got, _predicted(model.checkpoint, given, tmp_path / "logs"), check_dtype=False)
