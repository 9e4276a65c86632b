"""Where tagged sentences come from: the generated corpus, a hub data set, the user's files.
Each loader returns a `TaggedSplit` (memory-mapped where the data is not small) by split role
("train", and "validation"/"test" where it has them).
Also the sentences to predict: CoNLL or jsonl tokens, or raw text split into words."""

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from litforge.data.inputs import expand_inputs
from litforge.data.text.conll import read_conll
from litforge.data.text.ner_corpus import generate_sentences
from litforge.data.text.sources import hub_splits
from litforge.data.text.tagged_arrow import TaggedSplit, from_rows, read_tagged
from litforge.data.text.tokenizer import fingerprint
from litforge.utils.errors import UserError

# words of raw text: runs of letters/digits (with inner hyphens or apostrophes) or one punctuation mark
WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
# the last column of a CoNLL line: O or a tag of IOB/BIOES
TAG = re.compile(r"O|[BIES]-\S+")
INPUT_SUFFIXES = {".conll", ".iob", ".iob2", ".bio", ".bioes", ".tsv", ".txt", ".jsonl"}
KEY = "input"


def load_generated(num_sentences: int, seed: int) -> dict[str, TaggedSplit]:
    sentences = generate_sentences(num_sentences, seed)
    words, tags = [s.words for s in sentences], [s.tags for s in sentences]
    return {"train": from_rows(words, tags, "generated sentence ", f" (seed {seed})")}


def load_files(
    files: dict[str, str | None], token_column: Any, tag_column: Any, cache_dir: Path
) -> dict[str, TaggedSplit]:
    """`files` maps roles to CoNLL or jsonl paths; integer columns index the CoNLL columns."""
    if not files.get("train"):
        raise UserError(
            "data.train_file is not set: give your training file, e.g. data.train_file=data/train.conll "
            "(one 'token tag' line each, blank lines between sentences) or a jsonl with tokens and tags lists."
        )
    for key, column in (("data.token_column", token_column), ("data.tag_column", tag_column)):
        if not isinstance(column, int):
            raise UserError(f"{key}={column!r}: for CoNLL files give a column index (0 first, -1 last)")
    return {
        role: read_tagged(path, token_column, tag_column, cache_dir) for role, path in files.items() if path is not None
    }


def _tag_names(feature: Any) -> list[str] | None:
    """The tag names of a Sequence(ClassLabel) column; None where tags are stored as strings."""
    inner = getattr(feature, "feature", None)
    return list(inner.names) if hasattr(inner, "names") else None


def load_hub(
    name: str,
    config_name: str | None,
    cache_dir: str,
    splits: dict[str, str | None],
    token_column: Any,
    tag_column: Any,
) -> dict[str, TaggedSplit]:
    """The named splits of a hub data set with a list-of-tokens and a list-of-tags column, as the
    hub's own memory-mapped tables (tag ids become names in batches, see tagged_arrow.iob2_sentences)."""
    raw = {}
    for role, split, dataset in hub_splits(name, config_name, cache_dir, splits):
        for key, column in (("data.token_column", token_column), ("data.tag_column", tag_column)):
            if column not in dataset.column_names:
                raise UserError(
                    f"{name} [{split}] has no column {column!r} ({key}); its columns are {dataset.column_names}."
                )
        if token_column == tag_column:
            raise UserError(f"data.token_column and data.tag_column are both {token_column!r}: give two columns.")
        names = _tag_names(dataset.features[tag_column])
        renames = {old: new for old, new in ((token_column, "words"), (tag_column, "tags")) if old != new}
        columns = dataset.select_columns([token_column, tag_column]).rename_columns(renames)
        key = fingerprint(name, config_name, split, columns._fingerprint)
        raw[role] = TaggedSplit(columns, f"{name} [{split}] row ", names=names, key=key)
    return raw


class TokenInput(NamedTuple):
    """One input to tag: its words, and for raw text the text and each word's (start, end) in it."""

    id: str
    words: list[str]
    text: str | None = None
    spans: list[tuple[int, int]] | None = None


def text_input(id_: str, text: str) -> TokenInput:
    matches = list(WORD.finditer(text))
    return TokenInput(id_, [m.group() for m in matches], text, [m.span() for m in matches])


def request_input(id_: str, item: Any, index: int) -> TokenInput:
    """An in-memory input (e.g. an HTTP request's `texts[3]`): a text, split into words as a .txt line
    is, or a list of words, tagged as given."""
    where = f"texts[{index}]"
    if isinstance(item, list) and item and all(isinstance(t, str) and t.strip() for t in item):
        return TokenInput(id_, list(item))
    if isinstance(item, str) and WORD.search(item):
        return text_input(id_, item)
    raise UserError(
        f"{where}: give a text with at least one word, or a non-empty list of words "
        f'(e.g. ["Angela", "Merkel", "visited", "Paris"]); got {str(item)[:60]!r}.'
    )


def _is_conll(lines: list[str]) -> bool:
    """Whether a .txt file holds CoNLL columns (a -DOCSTART- line first, or a tag such as O or B-PER
    ending every non-blank line of two or more columns) rather than one text a line."""
    rows = [line.split() for line in lines if line.strip()]
    if rows and rows[0][0] == "-DOCSTART-":
        return True
    return bool(rows) and all(len(row) >= 2 and TAG.fullmatch(row[-1]) for row in rows)


def _lines(file: Path) -> list[str]:
    try:
        return file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{KEY}={file}: not a readable UTF-8 text file ({err}).") from err


def _jsonl_inputs(file: Path) -> list[TokenInput]:
    inputs = []
    for number, line in enumerate(_lines(file), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{file} line {number}: not a json object ({err}).") from err
        tokens = record.get("tokens") if isinstance(record, dict) else None
        text = record.get("text") if isinstance(record, dict) else None
        if isinstance(tokens, list) and tokens and all(isinstance(t, str) and t for t in tokens):
            inputs.append(TokenInput(str(number), tokens))
        elif isinstance(text, str) and text.strip():
            inputs.append(text_input(str(number), text))
        else:
            raise UserError(
                f"{file} line {number}: give a non-empty 'tokens' list of words or a non-empty 'text', "
                f'e.g. {{"tokens": ["Angela", "Merkel", "visited", "Paris"]}}.'
            )
    return inputs


def _file_inputs(file: Path, token_column: int) -> list[TokenInput]:
    """The inputs of one file, by line number: jsonl objects, the lines of a plain .txt, else CoNLL sentences."""
    if file.suffix.lower() == ".jsonl":
        return _jsonl_inputs(file)
    if file.suffix.lower() == ".txt":
        lines = _lines(file)
        if not _is_conll(lines):
            return [text_input(str(n), line) for n, line in enumerate(lines, start=1) if line.strip()]
    # the tags, if any, are not needed: the token column is read as the tag column too
    sentences = read_conll(file, token_column, token_column)
    # read_conll names each sentence "<file> line <first line>"
    return [TokenInput(sentence.where.rpartition(" line ")[2], sentence.words) for sentence in sentences]


def read_inputs(spec: str, token_column: int) -> list[TokenInput]:
    """The inputs `spec` names (a file, a folder, a glob): CoNLL files (the training's token column;
    tags ignored), .jsonl with a `tokens` list (tagged as given) or a `text` per line, and .txt files
    of one text a line (split into words by WORD; a .txt in CoNLL columns is read as CoNLL). An id
    is the line number (a CoNLL sentence: its first line), prefixed with the file where there are
    several files."""
    files = expand_inputs(spec, INPUT_SUFFIXES, "CoNLL, jsonl or text file")
    inputs = []
    for file in files:
        found = _file_inputs(file, token_column)
        inputs += [item._replace(id=f"{file}:{item.id}") for item in found] if len(files) > 1 else found
    if not inputs:
        raise UserError(f"{KEY}={spec} holds no sentence or text to tag.")
    return inputs
