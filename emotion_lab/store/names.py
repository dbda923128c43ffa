"""The MLflow contract: every tag, param, metric and artifact name that training writes and the
reading commands (compare, predict, attention) look up, and the tuples of scores they show.
Defined here once, used by name everywhere."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

# Tags of every run this project creates.
ROLE_TAG = "emotion_lab.role"
ROLE_JOB = "job"
ROLE_SWEEP = "sweep"
SWEEP_TAG = "sweep_id"
# MLflow's own tag that nests a job under its sweep's parent run in the UI.
PARENT_TAG = "mlflow.parentRunId"

# Tags of a job run.
# Hash of the config that defines a job; reruns with resume=true find their run by it.
JOB_KEY_TAG = "job_key"
JOB_NUM_TAG = "job_num"
INIT_TAG = "init"
MODEL_TAG = "model"
OVERRIDES_TAG = "overrides"
LABEL_NAMES_TAG = "label_names"
CHECKPOINT_DIR_TAG = "checkpoint_dir"
RESUME_COUNT_TAG = "resume_count"
# A search trial that the pruner stopped: the epoch it stopped after. Its run is FINISHED, with no
# test pass and no best_* metrics; no best-run rule picks it.
PRUNED_TAG = "pruned_at_epoch"
# Why a run ended FAILED or KILLED, in one line.
ERROR_TAG = "error"
# Which signal stopped a KILLED job, at which optimizer step ("SIGTERM at step 1092").
STOPPED_TAG = "emotion_lab.stopped_by"
# A running job's last sign of life (UTC, ISO 8601), refreshed with its metric writes at most
# every HEARTBEAT_EVERY_S. A RUNNING run silent for STALE_AFTER_S was probably killed.
HEARTBEAT_TAG = "emotion_lab.heartbeat"
HEARTBEAT_EVERY_S = 60
STALE_AFTER_S = 15 * 60

# Tags of a sweep's parent run.
SWEEP_DIR_TAG = "sweep_dir"
# Hash of the sweep's command-line overrides; resume=true continues the newest sweep with it.
SWEEP_KEY_TAG = "sweep_key"
# A search's Optuna study (redacted storage URL and study name), and what it found so far: the
# best value (a metric) and the best trial's parameters (tags, one per key), set by the sweeper.
SEARCH_STORAGE_TAG = "optuna.storage"
SEARCH_STUDY_TAG = "optuna.study"
SEARCH_BEST_VALUE = "search_best_value"
SEARCH_BEST_PARAM_TAG = "search_best.{key}"

# Params: the flattened resolved config (``flatten``), so a config key is its param name.
INIT_PARAM = "init"
SEED_PARAM = "seed"
MAX_LENGTH_PARAM = "model.max_length"
TEXT_COLUMN_PARAM = "data.text_column"
MONITOR_PARAM = "trainer.monitor"
# Params of the data a job used, per split (train, validation, test): where its rows came from
# (files, a hub split, or carved out of train, with the seed), and the seeded sample taken of them.
DATA_SOURCE_PARAM = "data_source.{split}"
DATA_SAMPLE_PARAM = "data_sample.{split}"

# A job's dataset inputs (MLflow's Datasets column): one per split role, in MLflow's contexts, under
# MLflow's own context tag; each named "<data>-<role>" with a digest of the rows the job used.
DATASET_CONTEXT_TAG = "mlflow.data.context"
DATASET_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}

# Provenance of job and sweep runs: MLflow's own source tags (the UI's Source column and git
# commit), then the command line and the package versions that ran.
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
USER_TAG = "mlflow.user"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_BRANCH_TAG = "mlflow.source.git.branch"
GIT_REPO_URL_TAG = "mlflow.source.git.repoURL"
GIT_DIRTY_TAG = "mlflow.source.git.dirty"
# Why there is no commit (the code is not in a git repository, or git is missing).
GIT_MISSING_TAG = "emotion_lab.git.missing"
# The commit the run was started at, when a resume continued it at another.
GIT_COMMIT_BEFORE_TAG = "emotion_lab.git.commit_before_resume"
COMMAND_TAG = "emotion_lab.command"
VERSION_TAG = "emotion_lab.version.{package}"
# The uncommitted changes of a dirty checkout, as `git diff HEAD` prints them.
GIT_DIFF_ARTIFACT = "source/git_diff.patch"

# System metrics, under MLflow's own names (the run's System metrics tab).
SYSTEM_PREFIX = "system/"
SYSTEM_CPU = "system/cpu_utilization_percentage"
SYSTEM_MEMORY_MB = "system/system_memory_usage_megabytes"
SYSTEM_MEMORY_PERCENT = "system/system_memory_usage_percentage"
SYSTEM_GPU_UTILIZATION = "system/gpu_{index}_utilization_percentage"
SYSTEM_GPU_MEMORY_MB = "system/gpu_{index}_memory_usage_megabytes"
SYSTEM_GPU_MEMORY_PERCENT = "system/gpu_{index}_memory_usage_percentage"

# Validation metrics, logged at each epoch's end; the ones trainer.monitor may name.
VAL_ACCURACY = "val_accuracy"
VAL_MACRO_F1 = "val_macro_f1"
VAL_LOSS = "val_loss"
MONITORS = (VAL_ACCURACY, VAL_MACRO_F1, VAL_LOSS)
# Test metrics, logged once at the job's end.
TEST_ACCURACY = "test_accuracy"
TEST_MACRO_F1 = "test_macro_f1"
# The scores every summary of runs shows: the kept epoch's validation numbers, then the test
# numbers. SCORES name them as a reading command shows them; LOGGED_SCORES (below) are the
# final metrics a job logs for them.
SCORES = (VAL_ACCURACY, VAL_MACRO_F1, TEST_ACCURACY, TEST_MACRO_F1)

# Metrics a job logs once, at its end: the monitored score of the epoch it kept (best_<monitor>).
BEST_PREFIX = "best_"
BEST_EPOCH_METRIC = "best_epoch"
# Test-split evaluation throughput, logged once (validation's is val_samples_per_s, per epoch).
TEST_SAMPLES_PER_S = "test_samples_per_s"
# Phases of a job, each logged once at its end as "<phase>_seconds" (train/timing.py):
# start: Accelerate and the MLflow run opened; data: tokenizer and tokenized splits; model: model,
# optimizer and loaders built and prepared; fit: the epochs (training, validation, checkpoints);
# finish: the test split, final metrics, report, figure and (with tracking.log_model) the model.
PHASES = ("start", "data", "model", "fit", "finish")
# The job's peak memory, logged at its end: CUDA's max_memory_allocated on a GPU, else the
# process's max RSS (docs/benchmarks.md compares it with the Trainer's).
PEAK_MEMORY_MB = "peak_memory_mb"
# Seconds a job spent on its dataset inputs, provenance and system-metrics samples.
RECORDS_SECONDS = "records_seconds"


def logged_score(score: str) -> str:
    """The final metric a job logs for a score: ``best_val_*`` for validation, else itself."""
    return BEST_PREFIX + score if score.startswith("val_") else score


LOGGED_SCORES = tuple(logged_score(s) for s in SCORES)


def phase_metric(phase: str) -> str:
    return f"{phase}_seconds"


# Metrics that measure the machine, not the model: they differ between any two runs of the same
# config (and between a resumed run and an uninterrupted one).
MEASURED_METRICS = frozenset(
    {
        "train_samples_per_s",
        "val_samples_per_s",
        TEST_SAMPLES_PER_S,
        "train_seconds",
        "wall_seconds",
        PEAK_MEMORY_MB,
        RECORDS_SECONDS,
        *(phase_metric(phase) for phase in PHASES),
    }
)


def is_measured(metric: str) -> bool:
    """Whether a metric measures the machine (``MEASURED_METRICS``, and every system metric)."""
    return metric in MEASURED_METRICS or metric.startswith(SYSTEM_PREFIX)


# Artifacts of a job run.
MODEL_ARTIFACT = "model"
CONFIG_ARTIFACT = "config.yaml"
CONFUSION_ARTIFACT = "confusion_matrix.png"
REPORT_TXT_ARTIFACT = "classification_report.txt"
REPORT_JSON_ARTIFACT = "classification_report.json"
# Per-example predictions of the kept epoch: a folder holding one parquet file per split.
PREDICTIONS_ARTIFACT = "predictions"
TEST_PREDICTIONS = "test.parquet"
VAL_PREDICTIONS = "validation.parquet"
# Their columns: the example's row in its raw split, its text, the true and the predicted label
# (class indices), and one softmax probability per class, named PROB_PREFIX + label name.
PRED_ROW, PRED_TEXT, PRED_LABEL, PRED_PREDICTED = "row", "text", "label", "pred"
PROB_PREFIX = "prob_"
# The predicted label and its probability: columns of predict's output files and of the MLflow
# model's output (its signature), beside one PROB_PREFIX + label name per class.
PREDICTED_LABEL, PREDICTED_PROB = "predicted_label", "predicted_prob"
# Artifacts of a sweep's parent run.
SWEEP_SUMMARY_ARTIFACT = "sweep_summary.md"
COMPARE_ARTIFACT_DIR = "compare"


def sweep_runs_url(ui: str, experiment_id: str, sweep_id: str) -> str:
    """The MLflow UI's Runs view filtered to one sweep (its parent and its jobs).

    MLflow 3.17 opens every experiment in its GenAI (traces) view unless the URL asks for
    ``workflowType=machine_learning``; experiment tags do not change that.
    """
    search = quote(f"tags.{SWEEP_TAG} = '{sweep_id}'", safe="")
    return (
        f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&searchFilter={search}"
    )


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their JSON text."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + ".") if value else {name: "{}"})
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


# The causal attention analysis (emotion_lab.attention), logged on each analysed run under
# ATTENTION_ARTIFACT_DIR; the two-model comparison goes under it on the sweep's parent run.
ATTENTION_ARTIFACT_DIR = "attention"
HEAD_IMPORTANCE_ARTIFACT = "head_importance.csv"
FAITHFULNESS_ARTIFACT = "faithfulness.csv"
WORDS_BY_CLASS_ARTIFACT = "words_by_class.csv"
ATTENTION_REPORT_ARTIFACT = "report.html"
# Headline metrics: each layer's attention ablated whole (change in loss, and in accuracy in
# points), the ERASER AOPC of each attribution method, the heads whose single ablation changes
# the loss (interval excludes 0), the Spearman agreement of ablation and gradient importance, and
# the relative completeness error of integrated gradients.
LAYER_ABLATION_DLOSS_METRIC = "attn_layer_ablation_dloss_L{layer}"
LAYER_ABLATION_DACC_METRIC = "attn_layer_ablation_dacc_L{layer}"
COMPREHENSIVENESS_METRIC = "attn_comprehensiveness_{method}"
SUFFICIENCY_METRIC = "attn_sufficiency_{method}"
HEADS_THAT_MATTER_METRIC = "attn_heads_that_matter"
IMPORTANCE_SPEARMAN_METRIC = "attn_importance_spearman"
IG_COMPLETENESS_METRIC = "attn_ig_completeness_error"
