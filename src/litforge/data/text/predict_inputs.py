"""New texts to predict, for the text classification and masked-LM data modules: the lines of .txt
files or a text column of tables, each with an id, and a collator that keeps them beside the token ids."""

from pathlib import Path
from typing import Any

from litforge.data.inputs import expand_inputs
from litforge.data.text.checks import check_columns
from litforge.data.text.checks import read_texts as read_column
from litforge.data.text.sources import FILE_FORMATS, read_file
from litforge.utils.errors import UserError

TEXT_SUFFIXES = {".txt", *FILE_FORMATS}
KEY = "input"


def require_trained_tokenizer(tokenizer: Any, state: str) -> None:
    """Prediction encodes inputs as training did: with the tokenizer (and `state`, e.g. label names)
    that a checkpoint's data state restores, never one trained anew on the inputs."""
    if tokenizer is None:
        raise UserError(
            f"predicting needs the tokenizer{state} of a trained model: load a checkpoint's data state first "
            "(python -m litforge.predict ckpt_path=<file.ckpt> input=<file> does)."
        )


def text_lines(file: Path) -> tuple[list[int], list[str]]:
    """The non-blank lines of a text file and their line numbers (from 1)."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{KEY}={file}: not a readable UTF-8 text file ({err}).") from err
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    return [n for n, _ in numbered], [line for _, line in numbered]


def _table(file: Path, columns: dict[str, str]) -> tuple[list[int], dict[str, list[str]]]:
    split = read_file(str(file), KEY)
    check_columns({"input": split}, columns)
    read = {name: read_column(split, column) for name, column in columns.items()}
    # rows numbered as in table predictions: 0 for the first data row
    return list(range(len(read["text"]))), read


def read_texts(spec: str, text_column: str, pair_column: str | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """The ids and texts (`{"text": [...], "text_pair": [...]}`) of every input `spec` names: a
    .txt file (one text a line, blank lines skipped), a csv/tsv/jsonl/json/parquet table with the
    training's text column (and pair column; a label column is ignored), a folder or a glob of
    them. An id is the line number of a .txt file (from 1) or the data row of a table (from 0, as
    table predictions number rows), prefixed with `<file>:` where there are several files."""
    files = expand_inputs(spec, TEXT_SUFFIXES, "text file (.txt, one text a line) or table")
    columns = {"text": text_column, **({"text_pair": pair_column} if pair_column else {})}
    ids: list[str] = []
    texts: dict[str, list[str]] = {name: [] for name in columns}
    for file in files:
        if file.suffix.lower() == ".txt":
            if pair_column:
                raise UserError(
                    f"{KEY}={file}: the model classifies text pairs (data.text_pair_column={pair_column}), which "
                    f"a .txt file cannot hold; give a table with columns {text_column!r} and {pair_column!r}."
                )
            numbers, lines = text_lines(file)
            read = {"text": lines}
        else:
            numbers, read = _table(file, columns)
        ids += [f"{file}:{n}" if len(files) > 1 else str(n) for n in numbers]
        for name in columns:
            texts[name] += read[name]
    if not ids:
        raise UserError(f"{KEY}={spec} holds no text: give at least one non-blank line or row.")
    return ids, texts


def request_text(item: Any, where: str) -> str:
    """A text of an in-memory input (e.g. an HTTP request's `texts[3]`): a string with some non-space."""
    if not isinstance(item, str) or not item.strip():
        shown = "an empty text" if isinstance(item, str) else f"a {type(item).__name__}"
        raise UserError(f"{where} is {shown}: give a non-empty string.")
    return item


def encode_inputs(tokenizer: Any, columns: dict[str, list[str]], max_length: int) -> tuple[Any, list[dict[str, Any]]]:
    """The texts (`read_texts`'s columns) encoded and cut at `max_length` tokens as in training,
    and each row's model inputs."""
    encoded = tokenizer(*columns.values(), truncation=True, max_length=max_length)
    names = [k for k in tokenizer.model_input_names if k in encoded]
    rows = [{k: encoded[k][row] for k in names} for row in range(len(encoded["input_ids"]))]
    return encoded, rows


class KeepFields:
    """A padding collator (e.g. DataCollatorWithPadding) for examples that also carry plain values
    (`id`, `text`): those are passed through as lists beside the padded tensors."""

    def __init__(self, collate: Any, fields: tuple[str, ...]) -> None:
        self.collate, self.fields = collate, fields

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        kept = {name: [f[name] for f in features] for name in self.fields if name in features[0]}
        batch = self.collate([{k: v for k, v in f.items() if k not in self.fields} for f in features])
        return {**batch, **kept}
