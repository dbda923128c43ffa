"""A job's ``model/`` artifact as an MLflow model: the Hugging Face files that predict,
attention and ``register=true`` read, plus the MLflow files that make the same folder a pyfunc
model (``MLmodel`` with its signature, an input example, explicit pip requirements and the
model code, ``emotion_lab/predict/pyfunc.py``).

The folder is logged twice: as the run's ``model/`` artifact (what the readers download, as for
runs logged before), and as the run's MLflow logged model named ``model``, with the run's final
metrics linked to it, so MLflow 3 lists it among the run's logged models.
``mlflow.pyfunc.load_model("runs:/<id>/model")`` reads the same files from either copy.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.time import get_current_time_millis
from packaging.version import Version

from emotion_lab.store import names
from emotion_lab.store.writer import RunLogger

log = logging.getLogger(__name__)

# The model code MLflow copies into the model (not imported here: it registers the model).
MODEL_CODE = Path(__file__).resolve().parents[1] / "predict" / "pyfunc.py"
# What the model code imports at serving time, pinned to the versions that trained it.
REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas")
MODEL_TYPE = "emotion_lab text classifier"


def signature(label_names: list[str], text_columns: list[str]) -> ModelSignature:
    """Texts (or the two texts of a pair) in; label, its probability and each class's out."""
    outputs = [ColSpec("string", names.PREDICTED_LABEL), ColSpec("double", names.PREDICTED_PROB)]
    outputs += [ColSpec("double", f"{names.PROB_PREFIX}{name}") for name in label_names]
    return ModelSignature(Schema([ColSpec("string", c) for c in text_columns]), Schema(outputs))


def pip_requirements() -> list[str]:
    # The public release of a local build (torch 2.13.0+cpu -> torch==2.13.0).
    return [f"{p}=={Version(metadata.version(p)).public}" for p in REQUIREMENTS]


def example_input(text: str, text_columns: list[str]) -> dict[str, str]:
    """The input example: a test text, or a test pair (shown as "first | second")."""
    if len(text_columns) == 1:
        return {text_columns[0]: text}
    first, _, second = text.partition(" | ")
    return {text_columns[0]: first, text_columns[1]: second or first}


def add_mlflow_model(
    folder: Path,
    label_names: list[str],
    text_columns: list[str],
    max_length: int,
    example: dict[str, str],
) -> None:
    """Make ``folder`` (a ``save_pretrained`` folder) an MLflow pyfunc model as well."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "mlflow"
        mlflow.pyfunc.save_model(
            path=str(target),
            python_model=str(MODEL_CODE),
            signature=signature(label_names, text_columns),
            input_example=pd.DataFrame([example]),
            pip_requirements=pip_requirements(),
            model_config={"max_length": max_length, "text_columns": text_columns},
        )
        # MLflow records where the code came from; it loads the copy beside MLmodel by name.
        meta = Model.load(str(target))
        meta.flavors["python_function"]["model_code_path"] = MODEL_CODE.name
        meta.save(str(target / "MLmodel"))
        for item in target.iterdir():
            shutil.move(str(item), folder / item.name)


def _logged_model_id(client: MlflowClient, run_id: str) -> str:
    """The run's logged model named ``model``: created once, found again on a retry or resume."""
    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models(
        [experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{names.MODEL_ARTIFACT}'",
        max_results=1,
    )
    if found:
        return found[0].model_id
    created = client.create_logged_model(
        experiment_id, name=names.MODEL_ARTIFACT, source_run_id=run_id, model_type=MODEL_TYPE
    )
    return created.model_id


def _test_dataset(client: MlflowClient, run_id: str) -> tuple[str | None, str | None]:
    """Name and digest of the run's test data input (the newest, after a resume on changed
    data), to link the test metrics to."""
    run = client.get_run(run_id)
    found = (None, None)
    for item in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in item.tags if t.key == names.DATASET_CONTEXT_TAG}
        if names.DATASET_CONTEXTS["test"] in contexts:
            found = (item.dataset.name, item.dataset.digest)
    return found


def log_logged_model(logger: RunLogger, folder: Path, metrics: dict[str, float], step: int) -> None:
    """Log ``folder`` as the run's logged model, with the run's final metrics linked to it (the
    test metrics also to the test data)."""
    if not logger.run_id:
        return

    def upload(client: MlflowClient, run_id: str) -> None:
        model_id = _logged_model_id(client, run_id)
        client.log_model_artifacts(model_id, str(folder))
        client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
        test_name, test_digest = _test_dataset(client, run_id)
        linked = []
        for key, value in metrics.items():
            if not key.startswith(("test_", names.BEST_PREFIX)):
                continue
            # The run holds the point already: with its value and timestamp, MLflow links it to
            # the model without a second point in the run's history. A resumed job's point at
            # this step is the first attempt's (a timing differs between attempts): link that one.
            held = [m for m in client.get_metric_history(run_id, key) if m.step == step]
            point, when = (
                (held[-1].value, held[-1].timestamp)
                if held
                else (float(value), get_current_time_millis())
            )
            dataset = (test_name, test_digest) if key.startswith("test_") else (None, None)
            linked.append(Metric(key, point, when, step, model_id, *dataset))
        client.log_batch(run_id, metrics=linked, synchronous=True)

    logger.write(upload)
