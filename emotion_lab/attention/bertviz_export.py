"""Optional interactive views from bertviz (``pip install bertviz``), saved as HTML.

The HTML loads require.js, d3 and jQuery from a CDN (cdnjs.cloudflare.com), so it renders only
in a browser that is online.
"""

from __future__ import annotations

import importlib.util

import torch

NOTE = (
    "<!-- bertviz view: loads require.js, d3 and jQuery from cdnjs.cloudflare.com, "
    "so it renders only with network access. -->\n"
)


def available() -> bool:
    return importlib.util.find_spec("bertviz") is not None


def views(attentions: torch.Tensor, labels: list[str]) -> dict[str, str]:
    """``head_view.html`` and ``model_view.html`` of one text's [layer, head, query, key]."""
    from bertviz import head_view, model_view

    per_layer = tuple(layer[None] for layer in attentions)
    return {
        name: NOTE + view(per_layer, labels, prettify_tokens=False, html_action="return").data
        for name, view in (("head_view.html", head_view), ("model_view.html", model_view))
    }
