"""Readable token labels and word keys, taken from the text itself rather than the vocabulary.

Vocabulary strings are tokenizer artefacts: GPT-2 writes a leading space as ``Ġ`` and bytes of
a multi-byte character as Latin-1 letters, BERT marks word pieces with ``##``. The character
offsets of a fast tokenizer point back into the text, which is readable by definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from emotion_lab.data.tokenization import PAIR_JOIN
from emotion_lab.errors import ModelError

# Marks a piece that continues the previous token's word, for every tokenizer.
CONTINUATION = "##"
# Stands for a token that is only whitespace (GPT-2 keeps runs of spaces as tokens).
BLANK = "␣"


# Shown between the two texts of a sentence pair.


@dataclass
class EncodedText:
    # The text, or the two texts of a pair joined by PAIR_JOIN.
    text: str
    input_ids: list[int]
    # One readable label per token, e.g. ["[CLS]", "i", "feel", "excit", "##ement", "[SEP]"].
    labels: list[str]
    # The whole word each token belongs to (special tokens: their own string).
    words: list[str]
    # True at the first token of each word: counts occurrences once per word.
    word_starts: list[bool]


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str] | list[tuple[str, str]],
    max_length: int,
) -> list[EncodedText]:
    """Texts, or (first, second) pairs tokenized as pairs the way training tokenizes them."""
    if not tokenizer.is_fast:
        raise ModelError(
            f"{type(tokenizer).__name__} is a slow tokenizer; attention labels need the "
            "character offsets of a fast one (save the model's tokenizer.json with it)."
        )
    parts = [(t,) if isinstance(t, str) else tuple(t) for t in texts]
    columns = [list(column) for column in zip(*parts, strict=True)]
    enc = tokenizer(*columns, truncation=True, max_length=max_length, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids)
    out = []
    for i, sources in enumerate(parts):
        ids = enc["input_ids"][i]
        offsets = enc["offset_mapping"][i]
        # A word is (which text of the pair, its index in that text).
        words_of = [
            None if w is None else (s, w)
            for s, w in zip(enc.sequence_ids(i), enc.word_ids(i), strict=True)
        ]
        spans: dict[tuple[int, int], tuple[int, int]] = {}
        for w, (start, end) in zip(words_of, offsets, strict=True):
            if w is not None:
                s, e = spans.get(w, (start, end))
                spans[w] = (min(s, start), max(e, end))
        labels, words, starts = [], [], []
        for t, (token_id, (start, end), w) in enumerate(zip(ids, offsets, words_of, strict=True)):
            if w is None or token_id in special:
                token = tokenizer.convert_ids_to_tokens(token_id)
                labels.append(token)
                words.append(token)
                starts.append(True)
                continue
            text = sources[w[0]]
            piece = text[start:end].strip() or BLANK
            continues = t > 0 and words_of[t - 1] == w
            labels.append(CONTINUATION + piece if continues else piece)
            words.append(text[slice(*spans[w])].strip() or BLANK)
            starts.append(not continues)
        out.append(EncodedText(PAIR_JOIN.join(sources), list(ids), labels, words, starts))
    return out
