"""A generated news-style NER corpus (PER, LOC, ORG in IOB2): offline and deterministic for a seed.

Names are drawn from lists and combined (first + last names, "<City> <suffix>" companies), so
many test entities are combinations never seen whole in training; a few words (Jordan,
Washington, Paris) are persons in some templates and places in others, so the model must read
the context rather than memorise the word.
"""

import random
from pathlib import Path

from litforge.data.text.conll import Sentence

FIRST = "Angela Barack John Maria Ahmed Yuki Olga Pierre Carlos Fatima Jordan Paris Lena Ivan Chen Amara".split()
LAST = "Merkel Obama Smith Garcia Khan Tanaka Petrova Dubois Silva Haddad Müller Rossi Nowak Okafor Lee".split()
CITIES = (
    "Berlin Paris London Madrid Tokyo Cairo Lagos Lima Oslo Rome Jordan Washington Nairobi Dublin "
    "Vienna Toronto Mumbai Seoul Prague Lisbon"
).split() + ["New York", "Buenos Aires", "Hong Kong", "Cape Town"]
ORGS = ["Siemens", "Reuters", "Google", "Toyota", "Unilever", "Nestlé", "Interpol", "UNESCO", "NATO"] + [
    "the United Nations",
    "the World Bank",
    "Deutsche Bank",
    "General Motors",
    "Red Cross",
]
ORG_SUFFIXES = ["Bank", "Airlines", "University", "Motors", "Telecom", "United"]

# {PER}, {LOC}, {ORG} are filled with entities; "the" inside an ORG name is not tagged
TEMPLATES = [
    "{PER} visited {LOC} on Monday .",
    "{PER} met {PER} in {LOC} .",
    "{ORG} opened a new office in {LOC} .",
    "{PER} , chief executive of {ORG} , said profits rose .",
    "Shares of {ORG} fell after {PER} resigned .",
    "The talks between {ORG} and {ORG} ended in {LOC} .",
    "{PER} was born in {LOC} and works for {ORG} .",
    "Police in {LOC} arrested a man on Tuesday .",
    "{ORG} said it would cut jobs in {LOC} and {LOC} .",
    "According to {PER} , the weather in {LOC} was mild .",
    "{PER} told reporters that {ORG} had no comment .",
    "Flights from {LOC} to {LOC} were cancelled .",
    "The minister thanked {PER} for the report .",
    "Prices rose by 3 percent last year .",
    "{ORG} signed a deal with {PER} .",
]


def _person(rng: random.Random) -> list[str]:
    return [rng.choice(FIRST), rng.choice(LAST)] if rng.random() < 0.8 else [rng.choice(LAST)]


def _organisation(rng: random.Random) -> list[str]:
    if rng.random() < 0.3:
        return [rng.choice(CITIES).split()[0], rng.choice(ORG_SUFFIXES)]
    return rng.choice(ORGS).split()


def _entity(kind: str, rng: random.Random) -> tuple[list[str], list[str]]:
    words = {"PER": _person, "LOC": lambda r: r.choice(CITIES).split(), "ORG": _organisation}[kind](rng)
    lead = 1 if words[0] == "the" else 0
    return words, ["O"] * lead + [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - lead - 1)


def generate_sentences(num_sentences: int, seed: int) -> list[Sentence]:
    """`num_sentences` tagged sentences (IOB2), the same for the same seed."""
    rng = random.Random(seed)
    sentences = []
    for index in range(num_sentences):
        words: list[str] = []
        tags: list[str] = []
        for piece in rng.choice(TEMPLATES).split():
            if piece in ("{PER}", "{LOC}", "{ORG}"):
                entity, entity_tags = _entity(piece[1:-1], rng)
                words += entity
                tags += entity_tags
            else:
                words.append(piece)
                tags.append("O")
        sentences.append(Sentence(words, tags, f"generated sentence {index} (seed {seed})"))
    return sentences


def write_conll(sentences: list[Sentence], path: str | Path) -> Path:
    """The sentences as a CoNLL file ('word tag' lines, blank line between sentences)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags, strict=True)) for s in sentences]
    path.write_text("-DOCSTART- -X- O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path
