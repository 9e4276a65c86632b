"""`python -m litforge.serve` as users run it: a real uvicorn server on a free port, a real HTTP client."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from litforge.serving.predictor import Predictor
from litforge.utils.errors import UserError
from tests.helpers import compose_config, run_cli
from tests.serving.conftest import checkpoint_of  # noqa: F401 (the fixture)
from tests.serving.models import same_records, sample_inputs

START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoint_of: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """The regression model served on 127.0.0.1; stopped (SIGTERM) when the module's tests are done."""
    port, logs = free_port(), tmp_path_factory.mktemp("serve_logs")
    args = [f"ckpt_path={checkpoint_of('regression')}", f"serve.port={port}", f"paths.log_dir={logs}", "extras=quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = open(logs / "server.out", "w+")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "litforge.serve", *args], stdout=out, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                out.seek(0)
                pytest.fail(f"the server did not start (exit {process.poll()}):\n{out.read()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        out.close()


def test_a_real_server_answers_predict_as_the_predictor_does(server: str, checkpoint_of: Callable[[str], Path]) -> None:  # noqa: F811
    rows = sample_inputs("regression")
    with httpx.Client(base_url=server, timeout=30) as client:
        answer = client.post("/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        expected = Predictor.from_checkpoint(checkpoint_of("regression")).predict(rows)
        same_records(answer.json()["predictions"], expected, ids=True)
        bad = client.post("/predict", json={"rows": [{"rooms": 2}]})
        assert bad.status_code == 422 and "rows[0] lacks the column(s) ['area', 'town']" in bad.json()["detail"]
        assert client.get("/health").json() == {"status": "ok", "task": "regression"}
        assert client.get("/metadata").json()["serve"]["max_batch_size"] == 32


def test_help_answers_without_importing_torch() -> None:
    code = "import sys; sys.argv = ['serve', '--help']; import litforge.serve as s; s.main()"
    code += "; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "serve is powered by Hydra" in proc.stdout, proc.stderr
    assert proc.stdout.strip().endswith("False")


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "no model to serve: give ckpt_path=<file.ckpt>"), (["serve.port=99999"], "serve.port=99999: give a port")],
)
def test_bad_settings_exit_2_naming_the_key(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli("litforge.serve", [*args, "extras=quiet"], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt: no such checkpoint file"),
        (["ckpt_path=a.ckpt", "model_uri=models:/m/1"], "give one, the model to serve"),
        (["serve.max_batch_size=0"], "serve.max_batch_size=0: give a positive number"),
        (["serve.max_wait_ms=-1"], "serve.max_wait_ms=-1: give a positive number (0: no batching)"),
        (["serve.access_log=often"], "serve.access_log='often': give true (a log line per request) or false"),
    ],
)
def test_each_setting_is_checked_before_a_model_is_loaded(args: list[str], message: str, tmp_path: Path) -> None:
    from litforge.serve import serve

    cfg = compose_config(args, "serve", tmp_path)
    with pytest.raises(UserError) as caught:
        serve(cfg)
    assert message in str(caught.value)
