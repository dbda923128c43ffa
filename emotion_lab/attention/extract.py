"""Models that return attention weights, and their attention over many texts in padded batches.

Training uses SDPA, which computes no weights to return; here every model is loaded with the
eager implementation. Texts are batched by length so that batches carry little padding; the
padding mask travels with every batch so the statistics can leave it out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from emotion_lab.attention.tokens import EncodedText
from emotion_lab.config import Init, ModelConfig
from emotion_lab.errors import ModelError
from emotion_lab.modeling import build_model, load_tokenizer
from emotion_lab.store.reader import SAFE_LOADING

log = logging.getLogger(__name__)

EAGER = "eager"


@dataclass
class LoadedModel:
    name: str
    model: PreTrainedModel
    tokenizer: Tokenizer
    # Causal models (GPT-2) let a token see only itself and earlier tokens.
    causal: bool

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, heads)."""
        config = self.model.config
        return config.num_hidden_layers, config.num_attention_heads


def load_model_dir(path: Path, name: str) -> LoadedModel:
    """A ``save_pretrained`` classifier with its tokenizer, e.g. a run's ``model/`` artifact."""
    tokenizer = load_tokenizer(str(path))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, attn_implementation=EAGER, **SAFE_LOADING
        )
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the classifier saved in {path}: {e}") from e
    return _ready(name, model, tokenizer)


def load_model_config(cfg: ModelConfig, init: Init, seed: int) -> LoadedModel:
    """A model as training builds it; the classification head is new and plays no part."""
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    torch.manual_seed(seed)
    model = build_model(cfg, init, ["label_0", "label_1"], tokenizer, attn_implementation=EAGER)
    return _ready(f"{init.value}-{Path(cfg.name_or_path).name}", model, tokenizer)


def _ready(name: str, model: PreTrainedModel, tokenizer: Tokenizer) -> LoadedModel:
    model.eval()
    probe = tokenizer("i feel", return_tensors="pt")
    with torch.inference_mode():
        attentions = model(**probe, output_attentions=True).attentions
    if not attentions or any(a is None for a in attentions):
        raise ModelError(
            f"{type(model).__name__} returns no attention weights with attn_implementation="
            f"{model.config._attn_implementation!r}; it needs the eager implementation."
        )
    first = attentions[0][0, :, 0, 1:]
    # A causal mask drives the weights of later tokens to exactly zero; softmax never does.
    return LoadedModel(name, model, tokenizer, causal=bool((first == 0).all()))


def predicted_label(loaded: LoadedModel, encoded: EncodedText) -> tuple[str, float]:
    """The class a trained classifier gives one text, by its own label names, and its
    probability."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([encoded.input_ids])).logits[0]
    probs = torch.softmax(logits.float(), dim=-1)
    best = int(probs.argmax())
    return loaded.model.config.id2label[best], float(probs[best])


@dataclass
class AttentionBatch:
    # [layers, batch, heads, query, key]
    attentions: torch.Tensor
    # [batch, tokens]: True on real tokens, False on padding.
    mask: torch.Tensor
    # Positions of the batch's texts in the list that was passed in.
    indices: list[int]


def _pad(encoded: list[EncodedText], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), longest), dtype=torch.bool)
    for row, e in enumerate(encoded):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[row, : len(e.input_ids)] = True
    return ids, mask


def forward_attention(
    loaded: LoadedModel, encoded: list[EncodedText]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of right-padded texts: ([layers, batch, heads, query, key], mask)."""
    ids, mask = _pad(encoded, loaded.tokenizer.pad_token_id)
    with torch.inference_mode():
        out = loaded.model(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
    return torch.stack(out.attentions).float(), mask


def attention_batches(
    loaded: LoadedModel, encoded: list[EncodedText], batch_size: int
) -> Iterator[AttentionBatch]:
    """Batches of similar-length texts, longest first, with a progress bar."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=f"attention {loaded.name}", unit="batch"):
        indices = order[start : start + batch_size]
        attentions, mask = forward_attention(loaded, [encoded[i] for i in indices])
        yield AttentionBatch(attentions, mask, indices)
