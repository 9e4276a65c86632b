"""The files a prediction input names: one file, a folder (searched recursively) or a glob."""

import glob
from collections.abc import Collection
from pathlib import Path

from litforge.utils.errors import UserError

GLOB_CHARACTERS = set("*?[")


def expand_inputs(spec: str | None, suffixes: Collection[str], what: str, key: str = "input") -> list[Path]:
    """The files `spec` names, sorted; a folder or glob keeps only names ending in `suffixes`
    (lower-cased), while a single file named outright is taken whatever its suffix."""
    if spec in (None, "", "???"):
        raise UserError(f"{key} is not set: give a {what}, a folder of them or a glob, e.g. {key}=new/*.png")
    path = Path(str(spec)).expanduser()
    allowed = ", ".join(sorted(suffixes))
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise UserError(f"{key}={spec}: the folder holds no {what} (no file ending in {allowed}, sub-folders too).")
        return files
    if GLOB_CHARACTERS & set(str(spec)):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in suffixes]
        if not files:
            found = f" (it matches {len(matches)} other paths)" if matches else ""
            raise UserError(f"{key}={spec}: the glob matches no {what} ending in {allowed}{found}.")
        return files
    raise UserError(f"{key}={spec}: no such file or folder. Give a {what}, a folder of them or a glob.")
