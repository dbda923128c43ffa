"""The option reference comes from the schema: every key documented once, docs kept current."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from emotion_lab import options
from emotion_lab.config import Config
from tests.conftest import REPO, run_cli


def _leaf_fields(cls: type) -> list[tuple[type, str]]:
    found = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            found += _leaf_fields(type(default))
        else:
            found.append((cls, f.name))
    return found


@pytest.mark.parametrize("command", sorted(options.SCHEMAS))
def test_every_key_of_every_command_has_one_line_of_help(command: str):
    fields = _leaf_fields(options.schema(command))
    missing = [f"{c.__name__}.{n}" for c, n in fields if n not in options.field_docs(c)]
    assert missing == []


def test_docs_configuration_is_generated_from_the_schema():
    text = (REPO / "docs" / "configuration.md").read_text()
    assert text == options.markdown(), (
        "docs/configuration.md is stale: run python -m emotion_lab.options > docs/configuration.md"
    )


def test_help_lists_every_key_with_its_default_and_help(tmp_path: Path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in options.options(Config):
        line = next(x for x in proc.stdout.splitlines() if x.split("=")[0].strip() == option.key)
        assert f"{option.key}={option.default}" in line
        assert option.help in line


def test_group_files_carry_only_what_differs_from_the_schema():
    """A group file that repeats a schema default would be a second home for it."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.structured(Config)
    repeated = []
    for path in sorted((REPO / "conf").glob("*/*.yaml")):
        group = path.parent.name
        if group not in defaults or path.parent.name == "hydra":
            continue
        values = OmegaConf.to_container(OmegaConf.load(path)) or {}
        for key, value in values.items():
            if (
                key in defaults[group]
                and OmegaConf.to_container(OmegaConf.create({"v": defaults[group][key]}))["v"]
                == value
                and (group, key) not in _SELECTING
            ):
                repeated.append(f"{path.relative_to(REPO)}: {key}")
    assert repeated == []


# Values a group file names on purpose although they equal the default: what the option selects.
_SELECTING = {("model", "name_or_path"), ("optimizer", "name"), ("data", "path"), ("data", "name")}
