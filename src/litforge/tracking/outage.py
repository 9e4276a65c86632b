"""MLflow writes that outlive an outage of the tracking server or store, so a run never stops for it."""

import logging
import re
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from datetime import datetime
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

# the MlflowClient methods that only write: they can wait, in order, until the store answers again
WRITES = frozenset(
    {"log_batch", "log_metric", "log_param", "set_tag", "delete_tag", "log_artifact", "log_artifacts",
     "log_dict", "log_text", "log_figure", "log_image", "log_table", "log_inputs", "set_terminated"}
)  # fmt: skip
# what MLflow reports for a server that does not answer (connection refused, timeout, 5xx after its
# retries) or a SQLite store that stays locked; other errors are mistakes that waiting cannot cure
OUTAGE_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})
# the most writes kept in memory (a few hundred bytes each); beyond it the oldest are dropped
MAX_KEPT = 100_000
# a server that is back answers /health at once; this bounds the probe of one that still hangs
PROBE_TIMEOUT_S = 3


def is_outage(err: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):
        return err.error_code in OUTAGE_CODES
    return isinstance(err, OSError)


def _short(err: BaseException) -> str:
    """The cause of a failed request (`NewConnectionError(... Connection refused)`) without the URL
    and retry count that MLflow and urllib3 wrap around it."""
    text = " ".join(str(err).split())
    cause = re.search(r"\(Caused by (.*)\)$", text)
    text = cause.group(1) if cause else text
    return text if len(text) <= 300 else f"{text[:300]}..."


class OutageTolerantClient:
    """An MlflowClient whose writes wait out an outage: the first write that fails (after MLflow's
    own, short, retries) and every later one are kept in order, and sent when the store answers
    again (asked at most every `retry_every` seconds, and by `flush` at the end of the run).
    Meanwhile `get_run` answers from its last reply: Lightning reads the run before ending it.
    Everything else goes to the client as it is."""

    def __init__(self, client: Any, uri: str, retry_every: float) -> None:
        self._client, self._uri, self._retry_every = client, uri, retry_every
        self._kept: deque[tuple[str, tuple, dict]] = deque()
        self._runs: dict[str, Any] = {}
        self._next_try = 0.0
        self.down_since: datetime | None = None
        self.error = ""
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in WRITES:
            return partial(self._write, name)
        return getattr(self._client, name)

    def get_run(self, run_id: str) -> Any:
        if self.down_since is None or run_id not in self._runs:
            try:
                self._runs[run_id] = self._client.get_run(run_id)
            except Exception as err:
                if not is_outage(err) or run_id not in self._runs:
                    raise
                self._went_down(err)
        return self._runs[run_id]

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.down_since is not None and not self.flush(force=False):
            self._keep(name, args, kwargs)
            return None
        try:
            return getattr(self._client, name)(*args, **kwargs)
        except Exception as err:
            if not is_outage(err):
                raise
            self._went_down(err)
            self._keep(name, args, kwargs)
            return None

    def _keep(self, name: str, args: tuple, kwargs: dict) -> None:
        if len(self._kept) >= MAX_KEPT:
            self._kept.popleft()
            self.dropped += 1
        self._kept.append((name, args, kwargs))

    def _went_down(self, err: BaseException) -> None:
        self._next_try = time.monotonic() + self._retry_every
        self.error = _short(err)
        if self.down_since is not None:
            return
        self.down_since = datetime.now()
        log.warning(
            "MLflow: %s does not answer (%s). Training goes on; the tracker's writes are kept and sent "
            "when it answers again (asked every %g s and at the end of the run). The run's metrics "
            "are in its CSV log and its checkpoints on disk either way.",
            self._uri,
            self.error,
            self._retry_every,
        )

    def _answers(self) -> bool:
        if not self._uri.startswith(("http://", "https://")):
            return True  # a local store: only the next write can tell
        try:
            urllib.request.urlopen(self._uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            return True  # it answered (a proxy or auth may refuse /health)
        except (OSError, ValueError):
            return False
        return True

    def flush(self, force: bool = True) -> bool:
        """Send the kept writes if the store answers (asked now if `force`, else at most every
        `retry_every` s); True when nothing is left waiting."""
        if self.down_since is None:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self._retry_every
        if not self._answers():
            return False
        sent, failed = 0, 0
        while self._kept:
            name, args, kwargs = self._kept[0]
            try:
                getattr(self._client, name)(*args, **kwargs)
                sent += 1
            except Exception as err:
                if is_outage(err):
                    self._went_down(err)
                    return False
                failed += 1
                log.warning("MLflow: a kept %s could not be sent: %s", name, _short(err))
            self._kept.popleft()
        log.warning(
            "MLflow: %s answers again after an outage since %s; %d kept writes were sent%s.",
            self._uri,
            f"{self.down_since:%H:%M:%S}",
            sent,
            f", {failed} refused" if failed else "",
        )
        self.down_since = None
        return True

    def unsent(self) -> str:
        """The writes still waiting, by kind: `log_batch x 40, log_artifact x 3`."""
        counts = Counter(name for name, _, _ in self._kept)
        text = ", ".join(f"{name} x {count}" for name, count in counts.most_common())
        return f"{text}; {self.dropped} older ones dropped" if self.dropped else text
