"""User mistakes (config, data, checkpoints) become one clear message and a non-zero exit."""

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

# Exit status for a mistake in the user's input, as opposed to a crash (1) or a kill.
USER_ERROR_EXIT = 2


class UserError(Exception):
    """A mistake the user can fix: the message names the bad value and what would be valid."""


@contextmanager
def report_user_errors(run_dir: str | Path | None = None, exit_on_error: bool = True) -> Iterator[None]:
    """Turn a UserError into a message on stderr and exit status 2.

    A run directory that holds nothing but what Hydra wrote at start (.hydra/, the log file)
    is removed, so a run refused at the door leaves no half-written output behind. Inside a
    sweep (`exit_on_error=False`) the error is logged and raised: the sweeper records a
    failed job and goes on with the next.
    """
    try:
        yield
    except UserError as err:
        if not exit_on_error:
            log.error("%s", err)
            raise
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.debug("user error", exc_info=True)
        print(f"Error: {err}", file=sys.stderr)
        if run_dir is not None:
            _remove_if_only_startup_files(Path(run_dir))
        sys.exit(USER_ERROR_EXIT)


def _remove_if_only_startup_files(run_dir: Path) -> None:
    if not run_dir.is_dir():
        return
    startup = {".hydra", "train.log", "eval.log", "predict.log", "serve.log", "config_tree.log"}
    if all(p.name in startup for p in run_dir.iterdir()):
        logging.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
