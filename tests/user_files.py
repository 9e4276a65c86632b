"""Small files shaped like users' own data: a folder of PNGs per class, CSVs with text and gaps,
CoNLL, plain text. Each is learnable (the classes differ), so a short run has something to learn."""

import random
from pathlib import Path

import numpy as np
from PIL import Image

WORDS_GOOD = ["great", "wonderful", "moving", "funny", "brilliant"]
WORDS_BAD = ["dull", "boring", "awful", "slow", "clumsy"]


def png_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 12, seed: int = 0) -> Path:
    """`root/<class>/<n>.png`: each class a different mean brightness; mixed sizes, L and RGB."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (20 + 4 * (i % 3), 18 + 2 * (i % 4))
            level = 40 + 80 * k
            pixels = np.clip(rng.normal(level, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "RGB")
            (image.convert("L") if i % 2 else image).save(root / name / f"{i:03d}.png")
    return root


def split_png_tree(root: Path, per_class: tuple[int, int, int] = (10, 4, 4)) -> Path:
    """`root/{train,val,test}/<class>/<n>.png`, the layout of many published image sets."""
    for seed, (split, count) in enumerate(zip(("train", "val", "test"), per_class, strict=True)):
        png_tree(root / split, per_class=count, seed=seed)
    return root


def reviews_csv(path: Path, rows: int = 120, seed: int = 0) -> Path:
    """A review per row with a string label, an extra column and some empty extra cells."""
    rng = random.Random(seed)
    lines = ["id,text,label,source"]
    for i in range(rows):
        good = i % 2 == 0
        words = rng.sample(WORDS_GOOD if good else WORDS_BAD, 2)
        text = f"the film was {words[0]} and {words[1]}"
        lines.append(f'{i},"{text}",{"positive" if good else "negative"},{"" if i % 5 == 0 else "web"}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def houses_csv(path: Path, rows: int = 120, seed: int = 0, gaps: bool = False) -> Path:
    """Numeric features and a text column (with `gaps`, a few missing feature cells); `price` is the target."""
    rng = np.random.default_rng(seed)
    lines = ["rooms,area,town,price"]
    for i in range(rows):
        rooms, area = int(rng.integers(1, 6)), float(rng.uniform(30, 150))
        price = 20 * rooms + 1.5 * area + float(rng.normal(0, 5))
        area_cell = "" if gaps and i % 17 == 3 else f"{area:.1f}"
        lines.append(f"{rooms},{area_cell},town{i % 3},{price:.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def weather_csv(path: Path, rows: int = 80, seed: int = 0) -> Path:
    """A weather table: numbers with a few gaps, a text `wind` column, and a Yes/No `rain_tomorrow` target."""
    rng = np.random.default_rng(seed)
    lines = ["humidity,pressure,wind,rain_tomorrow"]
    for i in range(rows):
        humidity, pressure = float(rng.uniform(20, 100)), float(rng.normal(1013, 8))
        rain = "Yes" if humidity + rng.normal(0, 10) > 65 else "No"
        humidity_cell = "" if i % 13 == 5 else f"{humidity:.1f}"
        lines.append(f"{humidity_cell},{pressure:.1f},{['N', 'S', 'E', 'W'][i % 4]},{rain}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def word_vectors_txt(path: Path, words: tuple[str, ...] = ("good", "bad", "film"), dim: int = 100) -> Path:
    """A GloVe-format file: a word, then its `dim` numbers, per line."""
    rng = np.random.default_rng(0)
    lines = [" ".join([word, *(f"{v:.4f}" for v in rng.normal(0, 0.1, dim))]) for word in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


PEOPLE = ["Anna Berg", "Tom Lee", "Maria Costa", "Ali Khan"]
PLACES = ["Paris", "Oslo", "Lima", "Cairo"]


def conll_file(path: Path, sentences: int = 60, seed: int = 0, scheme: str = "iob2") -> Path:
    """`token POS tag` lines in IOB2 (or BIOES), a blank line between sentences, a -DOCSTART- header."""
    rng = random.Random(seed)
    person, place_tag = (["B-PER", "E-PER"], "S-LOC") if scheme == "bioes" else (["B-PER", "I-PER"], "B-LOC")
    blocks = ["-DOCSTART- -X- O"]
    for _ in range(sentences):
        first, last = rng.choice(PEOPLE).split()
        place = rng.choice(PLACES)
        rows = [(first, "NNP", person[0]), (last, "NNP", person[1]), ("visited", "VBD", "O"), (place, "NNP", place_tag)]
        rows.append((".", ".", "O"))
        blocks.append("\n".join(" ".join(row) for row in rows))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def corpus_txt(path: Path, lines: int = 200, seed: int = 0) -> Path:
    """Plain text, one sentence a line, with blank lines between paragraphs."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        out.append(f"{rng.choice(PEOPLE)} lives in {rng.choice(PLACES)} and likes {rng.choice(WORDS_GOOD)} films .")
        if i % 10 == 9:
            out.append("")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
