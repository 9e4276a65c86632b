"""Tagged sentences from CoNLL-style and jsonl files, and tag-scheme conversion to IOB2.

The readers yield (words, tags, line) one sentence at a time, `line` being the sentence's first
line in the file, so a file larger than memory can be written out in batches (tagged_arrow.py)
and every message about a sentence can point the user at the line to fix. A Sentence is
(words, tags, where), `where` naming its file and first line: in-memory lists of them serve
small files (prediction inputs) and the generated corpus.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from litforge.utils.errors import UserError

SCHEMES = ("iob1", "iob2", "bioes")
# the prefixes each scheme allows before "-<type>"
PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}

Row = tuple[list[str], list[str], int]


class Sentence(NamedTuple):
    words: list[str]
    tags: list[str]
    where: str


def tagged_file(path: str | Path, kind: str) -> Path:
    """`path` as a file, or the error naming it as a missing `kind` file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{path}: no such {kind} file.")
    return file


def _check_columns(file: Path, number: int, line: str, width: int, token_column: int, tag_column: int) -> None:
    for key, column in (("data.token_column", token_column), ("data.tag_column", tag_column)):
        if not -width <= column < width:
            raise UserError(
                f"{file} line {number}: {key}={column}, but the lines have {width} columns "
                f"({line.strip()!r}); give a column index from {-width} to {width - 1}."
            )


def conll_rows(file: Path, token_column: int = 0, tag_column: int = -1) -> Iterator[Row]:
    """One token a line with columns separated by any run of spaces or tabs, a blank line
    between sentences, `-DOCSTART-` lines skipped. Every token line must have the column
    count of the file's first token line, so a stray space or missing tag is caught where it is."""
    words: list[str] = []
    tags: list[str] = []
    start = 0
    width: int | None = None
    found = False
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    found = True
                    yield words, tags, start
                    words, tags = [], []
                continue
            if width is None:
                width = len(fields)
                _check_columns(file, number, line, width, token_column, tag_column)
            if len(fields) != width:
                raise UserError(
                    f"{file} line {number}: {len(fields)} columns where the file's first token line has "
                    f"{width} ({line.strip()!r}). Each token line needs the same columns, e.g. 'token tag'."
                )
            if not words:
                start = number
            words.append(fields[token_column])
            tags.append(fields[tag_column])
    if words:
        found = True
        yield words, tags, start
    if not found:
        raise UserError(f"{file}: no tagged tokens found (one 'token tag' line each, blank lines between sentences).")


def read_conll(path: str | Path, token_column: int = 0, tag_column: int = -1) -> list[Sentence]:
    """The sentences of a CoNLL file (see `conll_rows`) in memory: for small files."""
    file = tagged_file(path, "CoNLL")
    return [Sentence(w, t, f"{file} line {n}") for w, t, n in conll_rows(file, token_column, tag_column)]


def jsonl_rows(file: Path, tokens_key: str = "tokens", tags_key: str = "tags") -> Iterator[Row]:
    """One json object a line with a list of tokens and an equally long list of string tags."""
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{file} line {number}"
            try:
                record = json.loads(line)
                words, tags = record[tokens_key], record[tags_key]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(
                    f"{where}: not a json object with {tokens_key!r} and {tags_key!r} lists ({err})."
                ) from err
            if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
                raise UserError(
                    f"{where}: {tokens_key!r} and {tags_key!r} must be lists of equal length "
                    f"(got {len(words) if isinstance(words, list) else words!r} tokens and "
                    f"{len(tags) if isinstance(tags, list) else tags!r} tags)."
                )
            if words:
                yield [str(w) for w in words], [str(t) for t in tags], number


def read_jsonl(path: str | Path, tokens_key: str = "tokens", tags_key: str = "tags") -> list[Sentence]:
    """The sentences of a jsonl file (see `jsonl_rows`) in memory: for small files."""
    file = tagged_file(path, "jsonl")
    return [Sentence(w, t, f"{file} line {n}") for w, t, n in jsonl_rows(file, tokens_key, tags_key)]


def tagged_rows(file: Path, token_column: int, tag_column: int) -> Iterator[Row]:
    """jsonl by its suffix, CoNLL columns otherwise (.conll, .txt, .tsv, .iob, ...)."""
    if file.suffix.lower() == ".jsonl":
        return jsonl_rows(file)
    return conll_rows(file, token_column, tag_column)


def _split(tag: str, scheme: str, where: str) -> tuple[str, str]:
    prefix, sep, kind = tag.partition("-")
    if tag == "O":
        return "O", ""
    if not sep or not kind or prefix not in PREFIXES[scheme]:
        raise UserError(
            f"{where}: tag {tag!r} is not in the {scheme.upper()} scheme (data.tag_scheme={scheme}), "
            f"whose tags are O or {'/'.join(PREFIXES[scheme])}-<TYPE>. Fix the tag or set data.tag_scheme "
            f"to the file's scheme ({', '.join(SCHEMES)})."
        )
    return prefix, kind


def to_iob2(tags: list[str], scheme: str, where: str = "tags") -> list[str]:
    """The same entities tagged in IOB2 (B- starts every entity); a tag outside `scheme` is an error."""
    if scheme not in SCHEMES:
        raise UserError(f"data.tag_scheme={scheme!r} is not one of {SCHEMES}")
    out = []
    previous = ("O", "")
    for tag in tags:
        prefix, kind = _split(tag, scheme, where)
        if prefix == "O":
            out.append("O")
        elif scheme == "bioes":
            out.append(f"{'B' if prefix in ('B', 'S') else 'I'}-{kind}")
        elif scheme == "iob1" and prefix == "I" and previous[1] != kind:
            # IOB1 writes I- at an entity's start unless the entity before it has the same type
            out.append(f"B-{kind}")
        else:
            out.append(tag)
        previous = (prefix, kind)
    return out
