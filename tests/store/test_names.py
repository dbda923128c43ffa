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


# MLflow's writing calls (client and fluent): the reading commands make them only through
# emotion_lab.store.annotate, under the store lock and through outages.
_MLFLOW_WRITES = {
    "log_artifact",
    "log_artifacts",
    "log_batch",
    "log_metric",
    "log_param",
    "log_params",
    "log_text",
    "log_dict",
    "log_figure",
    "log_inputs",
    "set_tag",
    "set_terminated",
    "create_run",
    "create_registered_model",
    "create_model_version",
    "set_registered_model_alias",
    "delete_tag",
}


def test_readers_write_to_mlflow_only_through_their_store_module():
    found = []
    for reader in ("compare", "predict", "attention"):
        for path in sorted((REPO / "emotion_lab" / reader).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _MLFLOW_WRITES
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.func.attr}")
    assert found == []
    # And the module they write through is not the training writer.
    annotate = (REPO / "emotion_lab" / "store" / "annotate.py").read_text()
    assert "emotion_lab.store.writer" not in annotate
