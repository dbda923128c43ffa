"""A text as words: its word pieces grouped into words, and the text with words removed.

Attributions are read per word (pieces sum into their word) and faithfulness removes whole
words. A removed word's tokens are cut out of the ids, never replaced by the pad token: GPT-2
pools the last non-pad token, so a pad in the middle would move the position it reads, and a
pad at the end would change nothing. Special tokens ([CLS], [SEP]) are kept, never words.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from emotion_lab.attention.tokens import EncodedText


@dataclass
class WordedText:
    text: str
    input_ids: list[int]
    # One entry per word: its string (lower-cased, the key words are counted by) and the
    # indices of its tokens.
    words: list[str]
    tokens: list[list[int]]

    @property
    def num_words(self) -> int:
        return len(self.words)

    def without(self, removed: Collection[int]) -> list[int]:
        """The ids with the tokens of the words ``removed`` (word indices) cut out."""
        cut = {t for w in removed for t in self.tokens[w]}
        return [token for t, token in enumerate(self.input_ids) if t not in cut]

    def keeping(self, kept: Collection[int]) -> list[int]:
        """The ids with every word but ``kept`` cut out (special tokens stay)."""
        keep = set(kept)
        return self.without([w for w in range(self.num_words) if w not in keep])

    def word_scores(self, token_scores: np.ndarray) -> np.ndarray:
        """[words] sums of per-token scores over each word's pieces."""
        return np.array([float(np.sum(token_scores[t])) for t in self.tokens])


def worded(encoded: EncodedText, special_ids: Collection[int]) -> WordedText:
    words: list[str] = []
    tokens: list[list[int]] = []
    for t, (token_id, word, start) in enumerate(
        zip(encoded.input_ids, encoded.words, encoded.word_starts, strict=True)
    ):
        if token_id in special_ids:
            continue
        if start or not tokens:
            words.append(word.lower())
            tokens.append([])
        tokens[-1].append(t)
    return WordedText(encoded.text, list(encoded.input_ids), words, tokens)
