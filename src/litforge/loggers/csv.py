import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from litforge.utils.compat import cached_csv_experiment, metrics_writer_base


class _AppendingWriter(metrics_writer_base()):
    def found_log_dir(self) -> None:
        # Lightning deletes an existing metrics.csv here; a resumed run appends to it instead.
        self._continued = self.fs.isfile(self.metrics_file_path)
        if self._continued:
            with self.fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        if self._continued and step is not None:
            self._drop_rows_from(step)
        self._continued = False
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        """The rows an interrupted run wrote after the checkpoint its resume starts from: the resumed
        run logs those steps again, and the first step it logs is where its own history begins."""
        with self.fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
        if len(kept) == len(rows):
            return
        # written beside the file and moved over it: a crash now leaves the old history, not half of it
        partial = f"{self.metrics_file_path}.partial"
        with self.fs.open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        self.fs.mv(partial, self.metrics_file_path)


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, but a resumed run (resume=<run dir>) keeps the metrics logged
    before its checkpoint and appends after them, so each step has its rows once."""

    @property
    def experiment(self) -> ExperimentWriter:
        return cached_csv_experiment(self, lambda: _AppendingWriter(log_dir=self.log_dir))
