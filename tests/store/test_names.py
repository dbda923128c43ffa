"""Every MLflow tag, param and artifact name is spelled once, in emotion_lab/store/names.py."""

from __future__ import annotations

import ast

from emotion_lab.store import names
from tests.conftest import REPO

# Keys of the sweep folder's sweep.json and the jobs' result.json, which share a word with a tag
# but are files of their own, not MLflow names.
_FILE_KEYS = {"sweep_id", "job_num"}


def _contract() -> set[str]:
    """The distinctive names (with a dot or underscore); plain words like "model" or "init"
    appear in code for other reasons."""
    # Params are config keys (the flattened config), spelled by the schema itself.
    values = {
        v
        for k, v in vars(names).items()
        if k.isupper() and not k.endswith("_PARAM") and isinstance(v, str)
    }
    return {v for v in values if ("." in v or "_" in v) and v not in _FILE_KEYS}


def test_no_mlflow_name_is_spelled_outside_the_names_module():
    contract = _contract()
    found = []
    for path in sorted((REPO / "emotion_lab").rglob("*.py")):
        if path == REPO / "emotion_lab" / "store" / "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in contract:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_readers_never_import_the_writer():
    readers = ("compare", "predict", "attention")
    found = []
    for reader in readers:
        for path in sorted((REPO / "emotion_lab" / reader).rglob("*.py")):
            if "emotion_lab.store.writer" in path.read_text():
                found.append(str(path.relative_to(REPO)))
    assert found == []
