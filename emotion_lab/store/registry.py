"""Model URIs the reading commands take, resolved to the run whose ``model/`` artifact they
load (so a registered model is loaded as its run's model is: safetensors only)."""

from __future__ import annotations

import re

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.errors import TrackingError, one_line
from emotion_lab.store import names

_RUNS = re.compile(rf"^runs:/([0-9a-f]+)/{names.MODEL_ARTIFACT}/?$")
_ALIAS = re.compile(r"^models:/([^/@]+)@([^/@]+)$")
_VERSION = re.compile(r"^models:/([^/@]+)/(\d+)$")


def run_of_model(client: MlflowClient, uri: str) -> str:
    """The run id behind ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or
    ``runs:/<id>/model``."""
    if found := _RUNS.match(uri):
        return found.group(1)
    try:
        if found := _ALIAS.match(uri):
            version = client.get_model_version_by_alias(found.group(1), found.group(2))
        elif found := _VERSION.match(uri):
            version = client.get_model_version(found.group(1), found.group(2))
        else:
            raise TrackingError(
                f"model_uri={uri}: expected models:/<name>@<alias>, models:/<name>/<version> "
                f"or runs:/<run id>/{names.MODEL_ARTIFACT}."
            )
    except MlflowException as e:
        raise TrackingError(
            f"model_uri={uri}: no such registered model version in {client.tracking_uri} "
            f"({one_line(e)[:200]}). `python -m emotion_lab.compare register=true` registers one."
        ) from e
    if not version.run_id:
        raise TrackingError(f"model_uri={uri}: version {version.version} names no run.")
    return version.run_id
