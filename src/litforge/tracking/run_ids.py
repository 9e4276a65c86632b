"""The trackers' run ids of a run directory, so `resume=<run dir>` logs into the same runs."""

import json
from pathlib import Path

FILE = "tracker_runs.json"


def load(run_dir: str | Path | None) -> dict[str, str]:
    path = Path(run_dir) / FILE if run_dir else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def remember(run_dir: str | Path, **ids: str) -> None:
    path = Path(run_dir) / FILE
    merged = {**load(run_dir), **ids}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(path)
