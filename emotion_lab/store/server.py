"""A remote MLflow tracking server: fail fast when it is down or refuses the credentials, bounded
retries when it blips, and a quick "is it back?" for jobs that wait out an outage.

MLflow retries each HTTP request with exponential backoff for minutes by default, so a wrong or
dead server URI would hang a job silently. Credentials are MLflow's business: it reads
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN from the environment
(or the userinfo of the URI); the probe sends the same ones, so wrong credentials end the command
before any work.
"""

from __future__ import annotations

import http.client
import os
import re
from urllib.parse import urlsplit

import requests
import urllib3
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from emotion_lab.errors import TrackingError, one_line
from emotion_lab.redaction import redact

# Defaults only: a value the user exported wins. A dead server fails a call within seconds
# instead of MLflow's minutes (docs/scaling.md).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_S = 5.0
# While a server is down, a job asks at most this often whether it is back, and waits at most
# this long for the answer: training goes on in between.
RETRY_EVERY_S = 5.0
RETRY_PROBE_TIMEOUT_S = 2.0
# A cheap call that needs an authenticated user on a server with basic auth (/health does not).
_AUTH_PROBE = "/api/2.0/mlflow/experiments/search"


# The server did not answer, or broke off its answer: refused, timed out, 5xx after MLflow's
# retries, or a response cut short (a server killed or restarting mid-reply: IncompleteRead).
_OUTAGE_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.RetryError,
    requests.exceptions.ChunkedEncodingError,
    http.client.IncompleteRead,
    urllib3.exceptions.ProtocolError,
)


def is_outage(error: BaseException) -> bool:
    """The server did not answer in full, as opposed to refusing the request: MLflow wraps the
    transport's error, so look along the chain."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _OUTAGE_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip().lower() if found else type(error).__name__


def answers(uri: str, timeout: float = RETRY_PROBE_TIMEOUT_S) -> bool:
    """Whether any HTTP server answers at ``uri`` now (its unauthenticated health route)."""
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.exceptions.SSLError:
        return True
    except requests.RequestException:
        return False
    return True


def check_reachable(uri: str) -> None:
    """One quick request; any HTTP answer, even 401 or 404, means a server is there."""
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.SSLError:
        return  # it answered; MLflow's own TLS settings (MLFLOW_TRACKING_INSECURE_TLS...) decide
    except requests.RequestException as e:
        raise TrackingError(
            f"tracking.uri={redact(uri)}: no MLflow server answers there ({_reason(e)}). "
            "Start it, or point tracking.uri or MLFLOW_TRACKING_URI at a running server."
        ) from e


def check_credentials(uri: str) -> None:
    """One authenticated request with the credentials MLflow will send: a server with basic auth
    answers 401 to missing or wrong ones, and the command ends here, in one line."""
    creds = get_default_host_creds(uri)
    try:
        response = http_request(
            creds,
            _AUTH_PROBE,
            "GET",
            max_retries=0,
            # The server answered /health: give it MLflow's usual time (checking a password
            # hash is slow on purpose).
            params={"max_results": 1},
        )
    except MlflowException as e:
        if "SSL" in str(e):
            return  # TLS is MLflow's business (MLFLOW_TRACKING_INSECURE_TLS, ...)
        raise TrackingError(f"tracking.uri={redact(uri)}: {one_line(e)}") from e
    user = creds.username or urlsplit(uri).username
    if response.status_code == 401:
        given = f"refused the credentials of user {user!r}" if user else "asks for credentials"
        raise TrackingError(
            f"tracking.uri={redact(uri)}: the MLflow server {given} (HTTP 401). Set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on that server."
        )
    if response.status_code == 403:
        raise TrackingError(
            f"tracking.uri={redact(uri)}: the MLflow server refused access to user {user!r} "
            "(HTTP 403). Ask its admin for permission, or check the server's --allowed-hosts."
        )


def prepare(uri: str) -> None:
    """Before the first MLflow call to ``uri``: bound MLflow's retries, check the server is up
    and takes the credentials."""
    if not is_http(uri):
        return
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if urlsplit(uri).password:
        # MLflow prints each run's link, built from the URI, credentials and all, to stdout.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    check_reachable(uri)
    check_credentials(uri)
