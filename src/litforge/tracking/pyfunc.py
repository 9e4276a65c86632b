"""A checkpoint as an MLflow model (the pyfunc flavour): `mlflow models serve`, `mlflow.pyfunc.load_model`
and `python -m litforge.serve model_uri=...` all predict with litforge's own predictor.

Inputs: a DataFrame (tables: the training columns, one row per input; texts: a `text` column, and
`text_pair` for a pair classifier; images: an `image` column of base64-encoded image files) or a list
of the predictor's items. Output: a DataFrame of the records `litforge.predict` writes, one row per
input; a nested value (NER spans, masked-LM candidates) is a JSON string.

Imports MLflow at import: entry points import this module inside the run.
"""

import base64
import binascii
import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# the artifact key of the checkpoint inside the MLflow model, and the model's name in its run
CHECKPOINT = "checkpoint"
MODEL_NAME = "model"
URI_FORMS = (
    "models:/<name>/<version>, models:/<name>@<alias>, models:/<name>/latest, models:/<model id>, "
    "runs:/<run id>/<model name>, or a local MLflow model folder"
)
_MODELS_URI = re.compile(r"models:/(m-[0-9a-f]+|[^/@]+/(\d+|latest)|[^/@]+@[\w-]+)/?")
_RUNS_URI = re.compile(r"runs:/[0-9a-f]+/\S+")


class LitforgeModel(mlflow.pyfunc.PythonModel):
    """The checkpoint under the model's artifacts, predicting with litforge's in-memory predictor.
    `model_config={"device": "cuda"}` at load picks the device (default: the CPU)."""

    def __init__(self, trusted_modules: Sequence[str] = ()) -> None:
        self.trusted_modules = tuple(trusted_modules)

    def load_context(self, context: Any) -> None:
        from litforge.serving.predictor import Predictor

        device = (context.model_config or {}).get("device", "cpu")
        self.predictor = Predictor.from_checkpoint(
            context.artifacts[CHECKPOINT], trusted_modules=self.trusted_modules, device=device
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        try:
            items = to_items(model_input, self.predictor.input_kind)
            return records_frame(self.predictor.predict(items))
        except UserError as err:
            # MLflow's scoring server answers this one with 400 and the message, not a 500
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err


def to_items(model_input: Any, input_kind: str) -> list[Any]:
    """The predictor's items from a DataFrame (one row per input) or a list of items."""
    if isinstance(model_input, pd.DataFrame):
        return _frame_items(model_input, input_kind)
    if isinstance(model_input, dict):
        return _frame_items(pd.DataFrame(model_input), input_kind)
    if isinstance(model_input, (list, tuple)):
        return [_image(item, i) for i, item in enumerate(model_input)] if input_kind == "image" else list(model_input)
    raise UserError(f"model input of type {type(model_input).__name__}: give a pandas DataFrame or a list")


def _frame_items(frame: pd.DataFrame, input_kind: str) -> list[Any]:
    if input_kind == "rows":
        return [{k: _missing_as_none(v) for k, v in row.items()} for row in frame.to_dict("records")]
    column = "image" if input_kind == "image" else "text"
    if column not in frame.columns:
        raise UserError(f"model input columns {list(frame.columns)}: a {input_kind} model reads a '{column}' column")
    if input_kind == "image":
        return [_image(value, i) for i, value in enumerate(frame["image"])]
    if "text_pair" in frame.columns:
        return [{"text": t, "text_pair": p} for t, p in zip(frame["text"], frame["text_pair"], strict=True)]
    return [list(t) if not isinstance(t, str) and isinstance(t, Iterable) else t for t in frame["text"]]


def _missing_as_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _image(value: Any, row: int) -> Any:
    """An encoded image file: bytes as given, a str as base64 (JSON has no bytes)."""
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise UserError(f"model input row {row}: 'image' is not a base64-encoded image file ({err})") from err


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record; a list or dict value becomes a JSON string, so every cell is a plain value."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    rows = [
        {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for k, v in record.items()}
        for record in records
    ]
    return pd.DataFrame(rows, columns=columns)


def input_example(predictor: Any) -> pd.DataFrame:
    """One input of the shape the checkpoint's data module reads (its `predict_schema`): a row of the
    training columns (0 for numbers, the first known value of a category), a short text (with the
    mask token for a masked LM), or a blank image of the training size as base64."""
    schema = predictor.metadata()["input"]
    if predictor.input_kind == "rows":
        columns = schema["columns"]
        return pd.DataFrame(
            [{n: (c.get("values") or [""])[0] if c["type"] == "category" else 0.0 for n, c in columns.items()}]
        )
    if predictor.input_kind == "image":
        from PIL import Image

        buffer = io.BytesIO()
        Image.new(schema["mode"], (schema["width"], schema["height"])).save(buffer, format="PNG")
        return pd.DataFrame({"image": [base64.b64encode(buffer.getvalue()).decode("ascii")]})
    mask = schema.get("mask_token")
    text = f"The {mask} is on the table." if mask else "A short text to predict."
    example = {"text": [text]}
    if schema.get("text_pair"):
        example["text_pair"] = ["A second text."]
    return pd.DataFrame(example)


def _signature(example: pd.DataFrame, output: pd.DataFrame, input_kind: str) -> Any:
    """The signature inferred from the example; table columns may be missing (None/NaN), as in training."""
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    signature = infer_signature(example, output)
    if input_kind == "rows":
        signature.inputs = Schema([ColSpec(c.type, c.name, required=False) for c in signature.inputs.inputs])
    return signature


def log_model(
    checkpoint: str | Path,
    run_id: str,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    registered_model_name: str | None = None,
    trusted_modules: Sequence[str] = (),
) -> Any:
    """Log `checkpoint` as the MLflow model `name` of run `run_id`, with its signature and an input
    example (and, given `registered_model_name`, as that model's new version); returns the logged
    model (`.model_uri`: models:/<model id>; `runs:/<run id>/<name>` names it too).

    Not `mlflow.pyfunc.log_model`: that one reads the global tracking URI and active run, and puts
    a model logged without one in the default experiment instead of the run's."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    from litforge.serving.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, trusted_modules=trusted_modules)
    example = input_example(predictor)
    output = records_frame(predictor.predict(to_items(example, predictor.input_kind)))
    client = MlflowClient(tracking_uri or None)
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        mlflow.pyfunc.save_model(
            path,
            python_model=LitforgeModel(trusted_modules),
            artifacts={CHECKPOINT: str(checkpoint)},
            signature=_signature(example, output, predictor.input_kind),
            input_example=example,
            pip_requirements=requirements(),
            # declared, so that load_model(..., model_config={"device": "cuda"}) may change it
            model_config={"device": "cpu"},
            mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id),
        )
        client.log_model_artifacts(logged.model_id, path)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    if registered_model_name:
        version = register(client, registered_model_name, logged.model_uri, run_id, logged.model_id)
        log.info("registered %s as model %s version %s", logged.model_uri, registered_model_name, version.version)
    return logged


def register(client: Any, name: str, source: str, run_id: str, model_id: str | None = None) -> Any:
    """A new version of the registered model `name` (created if new) from `source`."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)


def requirements() -> list[str]:
    """litforge's own requirements, pinned to the versions this run used (the public part: a CUDA
    or CPU build of torch is the serving machine's choice). Set explicitly: MLflow's inference of
    them would load the model again and may ask the network."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pinned = {}
    for line in [*(metadata.requires("litforge") or []), "mlflow", "pandas"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):
            pinned[requirement.name] = f"{requirement.name}=={Version(metadata.version(requirement.name)).public}"
    return list(pinned.values())


def resolve_model_uri(uri: str, tracking_uri: str | None = None, dst_path: str | Path | None = None) -> Path:
    """The checkpoint file of the MLflow model at `uri` (see URI_FORMS; a registered raw checkpoint
    folder works too), downloaded into `dst_path` (default: a new temporary folder). The tracking
    (and registry) server: `tracking_uri`, else $MLFLOW_TRACKING_URI."""
    local = Path(uri).expanduser()
    if not (_MODELS_URI.fullmatch(uri) or _RUNS_URI.fullmatch(uri)):
        if not local.is_dir():
            raise UserError(f"model_uri={uri}: not an MLflow model URI nor a folder; give {URI_FORMS}")
        return _checkpoint_in(local, uri)
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from litforge.tracking.outage import is_outage

    server = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    folder = Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="litforge-model-"))
    try:
        downloaded = download_artifacts(
            artifact_uri=uri, dst_path=str(folder), tracking_uri=server, registry_uri=server
        )
    except (MlflowException, OSError) as err:
        if dst_path is None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, MlflowException):
            why = "the tracking server does not answer" if is_outage(err) else err.message.split("\n")[0]
        else:
            why = str(err)
        raise UserError(f"model_uri={uri}: cannot download it from {server}: {why}") from err
    return Path(downloaded) if Path(downloaded).is_file() else _checkpoint_in(Path(downloaded), uri)


def _checkpoint_in(folder: Path, uri: str) -> Path:
    """The checkpoint of an MLflow model folder, or the one .ckpt file of a plain folder."""
    from mlflow.models import Model

    if (folder / "MLmodel").is_file():
        artifacts = Model.load(folder).flavors.get("python_function", {}).get("artifacts", {})
        if CHECKPOINT in artifacts:
            return folder / artifacts[CHECKPOINT]["path"]
        raise UserError(f"model_uri={uri}: an MLflow model without a litforge checkpoint; give {URI_FORMS}")
    checkpoints = sorted(folder.rglob("*.ckpt"))
    if len(checkpoints) != 1:
        found = f"{len(checkpoints)} .ckpt files" if checkpoints else "no MLmodel file nor .ckpt file"
        raise UserError(f"model_uri={uri}: {found} in {folder}; give {URI_FORMS}")
    return checkpoints[0]
