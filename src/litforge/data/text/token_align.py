"""Words to sub-tokens: windows that fit `max_length`, and word tags aligned to sub-tokens.
Shared by the token data module (training) and the token classifier (prediction on raw text)."""

from typing import Any

IGNORE = -100


def word_windows(subtokens_per_word: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive word ranges [start, end) of at most `budget` sub-tokens each, so a long
    sentence becomes several examples instead of losing its end; a single word over the budget
    is a window of its own (the tokenizer truncates it)."""
    windows, start, used = [], 0, 0
    for index, count in enumerate(subtokens_per_word):
        if index > start and used + count > budget:
            windows.append((start, index))
            start, used = index, 0
        used += count
    if subtokens_per_word:
        windows.append((start, len(subtokens_per_word)))
    return windows


def subtoken_counts(tokenizer: Any, sentences: list[list[str]]) -> list[list[int]]:
    """How many sub-tokens each word becomes in its sentence (context can matter for BPE)."""
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    counts = []
    for index, words in enumerate(sentences):
        per_word = [0] * len(words)
        for word in encoded.word_ids(index):
            per_word[word] += 1
        counts.append(per_word)
    return counts


def align_labels(
    word_ids: list[int | None], word_labels: list[int], label_all: bool, inside: list[int]
) -> tuple[list[int], list[int]]:
    """Sub-token labels and first-sub-token flags. The first sub-token of a word carries its tag;
    the rest are ignored (-100), or with `label_all` carry it too, a B- turned into its I-
    (`inside[label]`) since they continue the entity."""
    labels, starts, previous = [], [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE)
            starts.append(0)
        elif word != previous:
            labels.append(word_labels[word])
            starts.append(1)
        else:
            labels.append(inside[word_labels[word]] if label_all else IGNORE)
            starts.append(0)
        previous = word
    return labels, starts
