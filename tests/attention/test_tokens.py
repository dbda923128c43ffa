"""Token labels come from the text: no GPT-2 byte symbols, no vocabulary word-piece marks."""

from __future__ import annotations

from emotion_lab.attention.tokens import CONTINUATION, PAIR_JOIN, encode_texts
from emotion_lab.config import ModelConfig
from emotion_lab.modeling import load_tokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_gpt2_byte_level_tokens_become_readable_text():
    tok = load_tokenizer(ModelConfig().tokenizer_name)
    text = "i feel résumé today 😊"
    (enc,) = encode_texts(tok, [text], max_length=32)
    vocab_strings = tok.convert_ids_to_tokens(enc.input_ids)
    # The vocabulary spells the space as Ġ and é / the emoji as Latin-1 byte letters.
    assert any("Ġ" in t for t in vocab_strings) and any("Ã" in t for t in vocab_strings)
    assert not any("Ġ" in label or "Ã" in label or "ð" in label for label in enc.labels)
    assert enc.labels[:2] == ["i", "feel"]
    # résumé is split in pieces; later ones are marked as continuations, the word is whole.
    word = [i for i, w in enumerate(enc.words) if w == "résumé"]
    assert [enc.labels[i] for i in word] == ["ré", "##sum", "##é"]
    assert [enc.word_starts[i] for i in word] == [True, False, False]
    assert enc.words[-1] == "😊" and enc.labels[-1].removeprefix(CONTINUATION) == "😊"
    assert len(enc.labels) == len(enc.input_ids) == len(enc.words)


def test_bert_word_pieces_and_special_tokens():
    tok = load_tokenizer(MINILM)
    (enc,) = encode_texts(tok, ["snowboarding makes me happy"], max_length=32)
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert any(p.startswith("##") for p in pieces)  # snowboarding is split by the vocabulary
    assert enc.labels[0] == "[CLS]" and enc.labels[-1] == "[SEP]"
    snow = [i for i, w in enumerate(enc.words) if w == "snowboarding"]
    assert len(snow) == sum(p.startswith("##") for p in pieces) + 1
    assert "".join(enc.labels[i].removeprefix(CONTINUATION) for i in snow) == "snowboarding"
    assert enc.words[-3:] == ["me", "happy", "[SEP]"]


def test_truncation_keeps_labels_aligned():
    tok = load_tokenizer(ModelConfig().tokenizer_name)
    (enc,) = encode_texts(tok, ["one two three four five six"], max_length=3)
    assert enc.labels == ["one", "two", "three"]


def test_sentence_pairs_label_tokens_from_their_own_text():
    tok = load_tokenizer(MINILM)
    (enc,) = encode_texts(tok, [("a man plays guitar", "someone makes music")], max_length=32)
    assert enc.labels == [
        "[CLS]",
        "a",
        "man",
        "plays",
        "guitar",
        "[SEP]",
        "someone",
        "makes",
        "music",
        "[SEP]",
    ]
    assert enc.text == "a man plays guitar" + PAIR_JOIN + "someone makes music"
    # GPT-2 joins the two texts with nothing between: the second text's first word is still a
    # word of its own, not a continuation of the last word of the first.
    gpt2 = load_tokenizer(ModelConfig().tokenizer_name)
    (enc,) = encode_texts(gpt2, [("she plays", "someone sings")], max_length=32)
    assert enc.labels == ["she", "plays", "someone", "sings"]
    assert enc.words == ["she", "plays", "someone", "sings"] and all(enc.word_starts)
