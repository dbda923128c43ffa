"""The option reference: every config key with its type, default and one-line help.

The help is the attribute docstring under each field of the typed schemas, so a default and its
explanation live in one place. ``--help`` of every command and ``docs/configuration.md`` are
generated from here; ``python -m emotion_lab.options`` prints the markdown.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import itertools
import textwrap
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from omegaconf import OmegaConf

from emotion_lab.reports import markdown_table

# The schema of each command: (title, module, class).
SCHEMAS = {
    "train": ("python -m emotion_lab", "emotion_lab.config", "Config"),
    "compare": ("python -m emotion_lab.compare", "emotion_lab.compare.config", "CompareConfig"),
    "predict": ("python -m emotion_lab.predict", "emotion_lab.predict.config", "PredictConfig"),
    "attention": (
        "python -m emotion_lab.attention",
        "emotion_lab.attention.config",
        "AttentionConfig",
    ),
}


@dataclass(frozen=True)
class Option:
    key: str
    type: str
    default: str
    help: str


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal right under each field of ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return str(text).replace("typing.", "").replace("Optional[", "").replace(" | None", "?")


def _default(value: Any) -> str:
    """As it would be typed on the command line."""
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_default(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_default(v)}" for k, v in value.items()) + "}"
    return str(value)


def options(cls: type, prefix: str = "") -> list[Option]:
    """Every leaf key of a schema, in schema order; nested sections are flattened with dots."""
    docs = field_docs(cls)
    leaves, sections = [], []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            sections += options(type(value), f"{prefix}{f.name}.")
        else:
            help_text = docs.get(f.name, "")
            leaves.append(Option(prefix + f.name, _type_name(f.type), _default(value), help_text))
    # Top-level keys first (init, lr, seed ...), then the sections in schema order.
    return leaves + sections


def schema(command: str) -> type:
    _, module, name = SCHEMAS[command]
    return getattr(importlib.import_module(module), name)


def help_text(command: str) -> str:
    """The key listing of ``--help``: one line a key, aligned."""
    rows = options(schema(command))
    width = max(len(f"{o.key}={o.default}") for o in rows) + 2
    return "\n".join(f"  {f'{o.key}={o.default}':<{width}}{o.help}" for o in rows)


def markdown() -> str:
    """docs/configuration.md: every command's keys with type, default and help."""
    parts = [
        "# Configuration",
        "",
        "Generated from the typed schemas (`python -m emotion_lab.options > "
        "docs/configuration.md`); a test checks it is current. Set any key on the command line "
        "(`trainer.epochs=3`), pick a group option (`model=minilm`), or sweep with `-m` "
        "(`lr=1e-5,5e-5`). Group files under `conf/` carry only what differs from these "
        "defaults.",
    ]
    for command, (title, _, _) in SCHEMAS.items():
        rows = [[f"`{o.key}`", o.type, f"`{o.default}`", o.help] for o in options(schema(command))]
        parts += [
            "",
            f"## `{title}`",
            "",
            markdown_table(["key", "type", "default", "meaning"], rows),
        ]
    return "\n".join(parts) + "\n"


def register_resolver() -> None:
    """``${options:train}`` in a help template expands to that command's key listing."""
    OmegaConf.register_new_resolver("options", help_text, replace=True)


if __name__ == "__main__":
    print(markdown(), end="")
