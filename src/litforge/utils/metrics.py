import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}


def write_metrics(path: Path, metrics: Mapping[str, float]) -> None:
    """Write metrics as JSON next to the run, via a temporary file so a crash leaves no half file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    tmp.replace(path)
