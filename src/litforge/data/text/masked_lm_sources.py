"""The generated corpus of masked language modelling: facts about countries mixed with the
review sentences (the user's files and hub data sets are read by litforge.data.text.corpus)."""

import random

from litforge.data.text.sentiment_corpus import generate_reviews

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
