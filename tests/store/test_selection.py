"""The one rule that picks the best run, and the best configuration over seeds: validation only,
ties broken by validation macro-F1, then validation loss, then order, and said in words."""

from __future__ import annotations

from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

from emotion_lab.store.reader import best_group, best_run, decided_by, group_selection_key


def _run(job: int, acc: float, f1: float, loss: float, status: str = "FINISHED") -> Run:
    metrics = {"best_val_accuracy": acc, "best_val_macro_f1": f1, "best_val_loss": loss}
    info = RunInfo(f"run{job}", "0", "u", status, 0, 1, "active", run_name=f"job{job}")
    data = RunData(
        metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
        params=[Param("trainer.monitor", "val_accuracy")],
        tags=[RunTag("job_num", str(job))],
    )
    return Run(info, data)


def test_three_runs_tied_on_accuracy_are_decided_by_the_second_keys_and_say_so():
    runs = [_run(0, 0.9, 0.80, 0.5), _run(1, 0.9, 0.85, 0.6), _run(2, 0.9, 0.85, 0.4)]
    assert best_run(runs).info.run_id == "run2"
    keys = [group_selection_key([r]) for r in runs]
    assert decided_by(keys, 2, "val_accuracy") == (
        "decided by val_loss (tied on val_accuracy, val_macro_f1)"
    )
    assert decided_by(keys[:2], 1, "val_accuracy") == (
        "decided by val_macro_f1 (tied on val_accuracy)"
    )
    assert decided_by([keys[0], keys[0]], 0, "val_accuracy").startswith("decided by order")


def test_a_configuration_is_scored_by_the_mean_over_its_finished_seeds():
    steady = [_run(0, 0.80, 0.7, 0.5), _run(1, 0.82, 0.7, 0.5)]
    lucky = [_run(2, 0.90, 0.7, 0.5), _run(3, 0.70, 0.7, 0.5), _run(4, 0.99, 0.9, 0.1, "FAILED")]
    assert group_selection_key(lucky)[0] == 0.80
    assert best_group([lucky, steady]) == 1
    # A complete tie goes to the earlier configuration.
    assert best_group([steady, list(steady)]) == 0
    assert best_group([[lucky[2]]]) is None
