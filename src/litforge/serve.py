"""Serve a checkpoint's predictions over HTTP: `python -m litforge.serve ckpt_path=<file.ckpt>` (or
`model_uri=models:/<name>/<version>`), root config conf/serve.yaml (`serve.host`, `serve.port`,
batching and request limits); console script `litforge-serve`.

The FastAPI app (litforge/serving/app.py) answers `POST /predict` with the records litforge.predict
writes for the same inputs, through the same prediction code (litforge/serving/predictor.py), and
runs under uvicorn until stopped (Ctrl-C, SIGTERM).
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge.utils.config import CONFIG_DIR, config_help, require_file
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)


def checkpoint_path(cfg: DictConfig) -> Path:
    """`ckpt_path`, or the checkpoint of the MLflow model `model_uri` names (downloaded); one of them."""
    ckpt_path, model_uri = cfg.get("ckpt_path"), cfg.get("model_uri")
    if ckpt_path and model_uri:
        raise UserError(f"ckpt_path={ckpt_path} and model_uri={model_uri}: give one, the model to serve")
    if not model_uri:
        if not ckpt_path:
            raise UserError(
                "no model to serve: give ckpt_path=<file.ckpt> (e.g. <run dir>/checkpoints/last.ckpt) or "
                "model_uri=models:/<name>/<version>"
            )
        return require_file(ckpt_path, "checkpoint file", "ckpt_path")
    try:
        from litforge.tracking.pyfunc import resolve_model_uri
    except ImportError as err:
        raise UserError(
            f"model_uri={model_uri}: serving an MLflow model needs litforge.tracking.pyfunc, which this "
            f"install lacks ({err}); give the checkpoint file as ckpt_path=<file.ckpt> instead"
        ) from err
    return Path(resolve_model_uri(str(model_uri), tracking_uri=cfg.get("tracking_uri")))


def check_port(cfg: DictConfig) -> tuple[str, int]:
    host, port = cfg.serve.get("host"), cfg.serve.get("port")
    if not isinstance(host, str) or not host:
        raise UserError(f"serve.host={host!r}: give an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"serve.port={port!r}: give a port number from 1 to 65535 (0: any free port)")
    return host, port


def serve(cfg: DictConfig) -> None:
    import uvicorn

    from litforge.serving.app import ServeSettings, create_app
    from litforge.serving.predictor import Predictor

    host, port = check_port(cfg)
    access_log = cfg.serve.get("access_log", True)
    if not isinstance(access_log, bool):
        raise UserError(f"serve.access_log={access_log!r}: give true (a log line per request) or false")
    settings = ServeSettings.from_mapping(OmegaConf.to_container(cfg.serve, resolve=True))
    path = checkpoint_path(cfg)
    predictor = Predictor.from_checkpoint(path, cfg.get("trusted_modules") or (), device=cfg.serve.get("device", "cpu"))
    log.info("serving %s (%s) on http://%s:%d (docs at /docs)", path, predictor.task, host, port)
    # uvicorn's own loggers write through the run's handlers (console and serve.log)
    uvicorn.run(create_app(predictor, settings), host=host, port=port, log_config=None, access_log=access_log)


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(config_help("serve"))
        return
    run()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="serve")
def run(cfg: DictConfig) -> None:
    with report_user_errors(cfg.paths.output_dir):
        serve(cfg)


if __name__ == "__main__":
    main()
