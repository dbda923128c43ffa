"""How a single job (no ``-m``) ends: one short block, as a sweep ends with its summary."""

from __future__ import annotations

from collections.abc import Mapping

from emotion_lab.redaction import redact
from emotion_lab.store import names
from emotion_lab.store.connection import resolve_uri, ui_address


def job_end_block(
    metrics: Mapping[str, float],
    run_name: str,
    run_id: str,
    experiment_id: str,
    tracking_uri: str,
) -> str:
    """The kept epoch's test accuracy and macro-F1, the run's name and id, and its page in the
    MLflow UI (the server's address when there is one)."""
    epoch = metrics.get(names.BEST_EPOCH_METRIC)
    kept = f" (epoch {epoch:.0f}, chosen on validation)" if epoch is not None else ""
    url = names.run_url(ui_address(resolve_uri(tracking_uri)), experiment_id, run_id)
    return redact(
        f"\nJob finished{kept}: test_accuracy {metrics[names.TEST_ACCURACY]:.4f}, "
        f"test_macro_f1 {metrics[names.TEST_MACRO_F1]:.4f}\n"
        f"Run {run_name} ({run_id})\n"
        f"In the MLflow UI: {url}\n"
    )
