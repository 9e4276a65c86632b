"""Word vectors for a tokenizer's vocabulary from a text file: a word and its numbers per line, as
GloVe writes them (word2vec/fastText's `.vec` header line `<count> <dim>` is skipped; `.gz` is read)."""

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from litforge.utils.errors import UserError

KEY = "model.backbone.word_vectors"
FORMAT = (
    "a text file with one word a line followed by its numbers, separated by spaces (GloVe's format, e.g. "
    "glove.6B.100d.txt)"
)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(part.isdigit() for part in parts)


def _where(path: Path | str, line: int) -> str:
    return f"{KEY}={path} line {line}"


def vector_size(path: str | Path) -> int:
    """The dimension of the file's vectors, read from its first vector line; a UserError names a
    file that is missing, a folder, empty or whose first line holds no numbers."""
    file = Path(str(path)).expanduser()
    if file.is_dir():
        raise UserError(f"{KEY}={path} is a folder. Give {FORMAT}, or null to train the embeddings from scratch.")
    if not file.is_file():
        raise UserError(f"{KEY}={path}: no such file. Give {FORMAT}, or null to train the embeddings from scratch.")
    with _open(file) as lines:
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if not parts or (number == 1 and _is_header(parts)):
                continue
            if len(parts) < 2:
                raise UserError(
                    f"{_where(path, number)}: {line.strip()[:40]!r} is a word without numbers. Give {FORMAT}."
                )
            _numbers(parts[1:], path, number)
            return len(parts) - 1
    raise UserError(f"{KEY}={path} holds no word vectors. Give {FORMAT}.")


def _numbers(values: list[str], path: Path | str, number: int) -> list[float]:
    try:
        return [float(value) for value in values]
    except ValueError:
        bad = next(value for value in values if not _is_float(value))
        raise UserError(
            f"{_where(path, number)}: {bad[:40]!r} is not a number. Give {FORMAT}, each line with as many numbers."
        ) from None


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _vectors(path: Path, size: int, wanted: set[str]) -> Iterator[tuple[str, list[float]]]:
    """(word, vector) of the file's words in `wanted`; the word is everything before the last `size`
    values, so words with spaces (GloVe 840B has a few) stay whole, and other lines are not parsed."""
    with _open(path) as lines:
        for number, line in enumerate(lines, 1):
            parts = line.rstrip().rsplit(" ", size)
            if len(parts) < 2 or (number == 1 and _is_header(line.split())):
                continue
            word = parts[0]
            if word not in wanted:
                continue
            if len(parts) != size + 1:
                raise UserError(
                    f"{_where(path, number)}: the word {word.split(' ')[0][:40]!r} has {len(line.split()) - 1} "
                    f"numbers, but the file's first vector has {size}. Give {FORMAT}, each line with {size} numbers."
                )
            yield word, _numbers(parts[1:], path, number)


def check_size(path: str | Path, size: int, wanted: int, where: str) -> None:
    """A file of `size`-d vectors for embeddings of `wanted` dimensions (the value of config key `where`)."""
    if size != wanted:
        raise UserError(
            f"{KEY}={path} holds vectors of {size} numbers, but the model's embeddings have {wanted} "
            f"({where}={wanted}). Set {where}={size}, or give a file of {wanted}-dimensional vectors."
        )


def vocabulary_vectors(path: str | Path, size: int, vocab: dict[str, int]) -> tuple[dict[int, list[float]], int]:
    """The file's vector for each vocabulary token (`vocab`: token -> id) by id: the token itself, or else
    its lowercased form (GloVe is lowercase); and how many were found by the lowercased form."""
    wanted = set(vocab) | {token.lower() for token in vocab}
    found = dict(_vectors(Path(str(path)).expanduser(), size, wanted))
    rows, lowered = {}, 0
    for token, index in vocab.items():
        if token in found:
            rows[index] = found[token]
        elif token.lower() in found:
            rows[index], lowered = found[token.lower()], lowered + 1
    return rows, lowered
