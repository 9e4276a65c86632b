"""Plain texts for masked language modelling: a generated corpus (facts about countries mixed
with the review sentences), a hub data set's text column, or the user's .txt/csv/jsonl files."""

import random
from pathlib import Path

from litforge.data.text.checks import check_columns
from litforge.data.text.sentiment_corpus import generate_reviews
from litforge.data.text.sources import FILE_FORMATS, load_hub, read_file
from litforge.utils.errors import UserError

# country, capital, language, continent: few enough facts that a tiny model learns them all,
# so fill-mask answers ("the capital of germany is [MASK].") show what it has learnt
FACTS = (
    ("germany", "berlin", "german", "europe"),
    ("france", "paris", "french", "europe"),
    ("italy", "rome", "italian", "europe"),
    ("spain", "madrid", "spanish", "europe"),
    ("portugal", "lisbon", "portuguese", "europe"),
    ("poland", "warsaw", "polish", "europe"),
    ("greece", "athens", "greek", "europe"),
    ("sweden", "stockholm", "swedish", "europe"),
    ("japan", "tokyo", "japanese", "asia"),
    ("china", "beijing", "chinese", "asia"),
    ("thailand", "bangkok", "thai", "asia"),
    ("egypt", "cairo", "arabic", "africa"),
    ("kenya", "nairobi", "swahili", "africa"),
    ("brazil", "brasilia", "portuguese", "america"),
    ("mexico", "mexico city", "spanish", "america"),
    ("peru", "lima", "spanish", "america"),
)
TEMPLATES = (
    "the capital of {country} is {capital}.",
    "{capital} is the capital of {country}.",
    "people in {country} speak {language}.",
    "in {capital} most people speak {language}.",
    "{country} is a country in {continent}.",
    "{capital} is a city in {continent}.",
)
TEXT_FORMATS = {".txt", *FILE_FORMATS}


def generate_corpus(num_examples: int, seed: int) -> list[str]:
    """`num_examples` sentences, half facts from FACTS and half generated reviews."""
    rng = random.Random(seed)
    reviews = iter(generate_reviews(num_examples, seed)["text"])
    texts = []
    for _ in range(num_examples):
        if rng.random() < 0.5:
            country, capital, language, continent = rng.choice(FACTS)
            template = rng.choice(TEMPLATES)
            texts.append(template.format(country=country, capital=capital, language=language, continent=continent))
        else:
            texts.append(next(reviews))
    return texts


def non_blank(values: list) -> list[str]:
    """Texts without the blank lines and missing values corpora are full of (wikitext's blank lines)."""
    return [v for v in values if isinstance(v, str) and v.strip()]


def read_text_file(path: str, key: str, text_column: str) -> list[str]:
    """A .txt file's non-blank lines, or the `text_column` of a csv/tsv/jsonl/json/parquet file."""
    file = Path(path).expanduser()
    if file.suffix.lower() not in TEXT_FORMATS:
        raise UserError(f"{key}={path}: unknown file type {file.suffix!r}; give one of {sorted(TEXT_FORMATS)}.")
    if file.suffix.lower() == ".txt":
        if not file.is_file():
            raise UserError(f"{key}={path}: no such file.")
        return non_blank(file.read_text(encoding="utf-8").splitlines())
    split = read_file(path, key)
    check_columns({"file": split}, {"data.text_column": text_column})
    return non_blank(split.read(text_column))


def load_files(
    train_file: str | None, val_file: str | None, test_file: str | None, text_column: str
) -> dict[str, list[str]]:
    """The texts of the user's training file and, where given, validation and test files."""
    if not train_file:
        raise UserError("data.train_file is not set: give a .txt (one text a line), csv, jsonl or parquet file")
    files = {
        "train": (train_file, "data.train_file"),
        "validation": (val_file, "data.val_file"),
        "test": (test_file, "data.test_path"),
    }
    return {role: read_text_file(path, key, text_column) for role, (path, key) in files.items() if path}


def read_hub(
    name: str, config_name: str | None, cache_dir: str, splits: dict[str, str | None], text_column: str
) -> dict[str, list[str]]:
    raw = load_hub(name, config_name, cache_dir, splits)
    check_columns(raw, {"data.text_column": text_column})
    return {role: non_blank(split.read(text_column)) for role, split in raw.items()}
