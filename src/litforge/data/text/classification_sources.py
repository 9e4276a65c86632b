"""Where labelled texts come from: the generated review corpus, a hub data set (sources.load_hub),
the user's files. Each loader returns raw splits by name ("train", and "validation"/"test" where
the source has them)."""

from pathlib import Path

from litforge.data.text.sentiment_corpus import generate_reviews
from litforge.data.text.sources import RawSplit, read_file
from litforge.utils.errors import UserError


def load_generated(num_examples: int, seed: int, label_noise: float) -> dict[str, RawSplit]:
    import datasets

    columns = generate_reviews(num_examples, seed, label_noise)
    origin = f"generated corpus (data.num_examples={num_examples}, seed {seed})"
    return {"train": RawSplit(origin, datasets.Dataset.from_dict(columns))}


def load_files(
    train_file: str | None, val_file: str | None, test_file: str | None, cache_dir: Path
) -> dict[str, RawSplit]:
    """The user's files, read into memory-mapped tables under `cache_dir`."""
    if not train_file:
        raise UserError(
            "data.train_file is not set: give your training file, e.g. data.train_file=data/reviews.csv "
            "(csv/tsv/jsonl/json/parquet with a text and a label column)."
        )
    files = {
        "train": (train_file, "data.train_file"),
        "validation": (val_file, "data.val_file"),
        "test": (test_file, "data.test_file"),
    }
    return {role: read_file(path, key, cache_dir) for role, (path, key) in files.items() if path}
