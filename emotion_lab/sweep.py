"""Sweep-level bookkeeping: a parent MLflow run per multirun, and a closing summary.

Hydra calls these hooks in the launching process. Jobs write ``result.json`` into their own
output dir, which works for in-process and out-of-process launchers alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from emotion_lab.errors import UserError

SWEEP_FILE = "sweep.json"
RESULT_FILE = "result.json"


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {"sweep_id": sweep_dir.name}


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    results = [json.loads(p.read_text()) for p in sweep_dir.glob(f"*/{RESULT_FILE}")]
    return sorted(results, key=lambda r: r.get("job_num") or 0)


def swept_overrides(results: list[dict[str, Any]]) -> list[list[str]]:
    """Each job's overrides, less those every job shares: what the sweep varied."""
    common = set.intersection(*(set(r.get("overrides", [])) for r in results)) if results else set()
    return [[o for o in r.get("overrides", []) if o not in common] for r in results]


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| job | swept | status | test_accuracy | test_macro_f1 | best_epoch | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, swept in zip(results, swept_overrides(results), strict=True):
        m = r.get("metrics") or {}
        cells = [f"{m[k]:.4f}" if k in m else "" for k in ("test_accuracy", "test_macro_f1")] + [
            f"{m['best_epoch']:.0f}" if "best_epoch" in m else ""
        ]
        lines.append(
            f"| {r.get('job_num')} | {' '.join(swept)} | {r.get('status')} | "
            + " | ".join(cells)
            + f" | {r.get('error', '')} |"
        )
    return "\n".join(lines)


class SweepCallback(Callback):
    """Creates the sweep's parent run before the jobs, closes it and prints a summary after."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from emotion_lab import tracking
        from emotion_lab.config import TrackingConfig

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"sweep_id": sweep_dir.name}
        try:
            tracking_cfg: TrackingConfig = OmegaConf.to_object(config.tracking)  # type: ignore[assignment]
            experiment_id = tracking.setup(tracking_cfg)
        except UserError as e:
            print(f"emotion_lab: error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
        info["parent_run_id"] = tracking.create_sweep_run(
            experiment_id, info["sweep_id"], {"sweep_dir": str(sweep_dir.resolve())}
        )
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=2))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from emotion_lab import tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        info = read_sweep_file(sweep_dir)
        results = collect_results(sweep_dir)
        failed = [r for r in results if r.get("status") != "FINISHED"]
        table = summary_table(results)
        if "parent_run_id" in info:
            tracking.end_sweep_run(info["parent_run_id"], bool(failed), table + "\n")
        print(
            f"\nSweep {info['sweep_id']}: {len(results) - len(failed)} finished, "
            f"{len(failed)} failed\n{table}",
            flush=True,
        )
        if failed:
            sys.exit(1)
