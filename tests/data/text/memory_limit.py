"""A text data module preparing a user's file in a subprocess whose memory is capped a little above
what it holds at rest: a pipeline that materialises the file runs out of memory there."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SCRIPT = textwrap.dedent(
    """
    import importlib, json, resource, sys
    target, settings, small, big, data_dir, headroom_mb, instead = sys.argv[1:]
    module, name = target.split(":")
    DataModule = getattr(importlib.import_module(module), name)

    def prepare(path, where):
        dm = DataModule(source="files", train_file=path, data_dir=where, tokenizer_dir=where + "/tokenizer",
                        **json.loads(settings))
        dm.setup("fit")
        return dm

    def data_kb():
        status = open("/proc/self/status").read().split("\\n")
        return int(next(line for line in status if line.startswith("VmData:")).split()[1])

    # every lazy import, thread pool and allocator arena in place before the limit
    prepare(small, data_dir + "/small")
    if instead:
        exec(instead, {"path": small})
    limit = (data_kb() + int(headroom_mb) * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    if instead:
        exec(instead, {"path": big})
    else:
        dm = prepare(big, data_dir + "/big")
        print(json.dumps({"splits": {role: len(split) for role, split in dm.splits.items()},
                          "examples": {role: len(examples) for role, examples in dm.examples.items()}}))
    """
)


def prepare_within_limit(
    target: str,
    settings: dict[str, Any],
    files: tuple[Path, Path],
    data_dir: Path,
    headroom_mb: int,
    instead: str = "",
) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, int]]]:
    """`target` ("module:DataModule") with `settings` prepares files[0] (the warm-up), then files[1]
    within `headroom_mb` of memory more; its splits' and examples' sizes. `instead`: code run on
    each file (as `path`) in place of the data module, e.g. another reader to compare."""
    small, big = files
    args = [SCRIPT, target, json.dumps(settings), str(small), str(big), str(data_dir), str(headroom_mb), instead]
    proc = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, timeout=900)
    sizes = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 and not instead else {}
    return proc, sizes
