"""A generated movie-review sentiment corpus: offline, deterministic for a seed, and not
solvable by counting words alone, since "not" flips an adjective and "but" lets the second
clause decide the label."""

import random

LABELS = ("negative", "positive")
SUBJECTS = (
    "the film",
    "this movie",
    "the plot",
    "the acting",
    "the soundtrack",
    "the script",
    "the ending",
    "the cast",
    "the camera work",
    "the dialogue",
    "the pacing",
    "the story",
    "the lead",
    "the villain",
)
VERBS = ("was", "is", "felt", "seemed", "looked", "turned out")
ADVERBS = ("", "", "really", "truly", "quite", "very", "rather", "surprisingly", "pretty")
OPENERS = ("", "", "", "honestly,", "overall", "i think", "in my opinion", "to be fair,", "sadly", "frankly,")
ADJECTIVES = (
    (
        "bad",
        "boring",
        "dull",
        "awful",
        "terrible",
        "clumsy",
        "predictable",
        "tedious",
        "weak",
        "messy",
        "forgettable",
        "painful",
        "bland",
        "silly",
    ),
    (
        "good",
        "great",
        "wonderful",
        "brilliant",
        "moving",
        "funny",
        "superb",
        "charming",
        "gripping",
        "delightful",
        "clever",
        "beautiful",
        "fresh",
        "solid",
    ),
)


def _verdict(rng: random.Random, polarity: int) -> str:
    """An adjective phrase whose sentiment is `polarity` (0 negative, 1 positive); a quarter are negated."""
    negated = rng.random() < 0.25
    words = ["not" if negated else "", rng.choice(ADVERBS), rng.choice(ADJECTIVES[polarity ^ negated])]
    return " ".join(w for w in words if w)


def _clause(rng: random.Random, polarity: int) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {_verdict(rng, polarity)}"


def _review(rng: random.Random) -> tuple[str, int]:
    label = rng.randrange(2)
    form = rng.random()
    if form < 0.1:
        # bare verdicts ("not bad", "really great"), the way people type a quick prediction
        text = _verdict(rng, label)
    elif form < 0.5:
        text = _clause(rng, label)
    elif form < 0.8:
        text = f"{_clause(rng, 1 - label)} but {_clause(rng, label)}"
    else:
        text = f"{_clause(rng, label)} and {_clause(rng, label)}"
    opener = rng.choice(OPENERS)
    return f"{opener} {text}".strip(), label


def generate_reviews(num_examples: int, seed: int, label_noise: float = 0.0) -> dict[str, list[str]]:
    """`num_examples` one-sentence reviews with "negative"/"positive" labels; a `label_noise`
    fraction of labels is flipped so that no model can reach 100%."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(num_examples):
        text, label = _review(rng)
        if rng.random() < label_noise:
            label = 1 - label
        texts.append(text)
        labels.append(LABELS[label])
    return {"text": texts, "label": labels}
