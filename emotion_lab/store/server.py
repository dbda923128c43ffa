"""A remote MLflow tracking server: fail fast when it is down, bounded retries when it blips.

MLflow retries each HTTP request with exponential backoff for minutes by default, so a wrong or
dead server URI would hang a job silently. Credentials are MLflow's business: it reads
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN from the environment.
"""

from __future__ import annotations

import os
import re

import requests

from emotion_lab.errors import TrackingError

# Defaults only: a value the user exported wins. A dead server fails a call within seconds
# instead of MLflow's minutes (docs/scaling.md).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_S = 5.0


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip().lower() if found else type(error).__name__


def check_reachable(uri: str) -> None:
    """One quick request; any HTTP answer, even 401 or 404, means a server is there."""
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.SSLError:
        return  # it answered; MLflow's own TLS settings (MLFLOW_TRACKING_INSECURE_TLS...) decide
    except requests.RequestException as e:
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow server answers there ({_reason(e)}). "
            "Start it, or point tracking.uri or MLFLOW_TRACKING_URI at a running server."
        ) from e


def prepare(uri: str) -> None:
    """Before the first MLflow call to ``uri``: bound MLflow's retries, check the server is up."""
    if not is_http(uri):
        return
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    check_reachable(uri)
