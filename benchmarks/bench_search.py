"""The same seeded search with the median pruner and without, side by side in one run: wall
time, epochs trained, training seconds and the best validation score found.

    python benchmarks/bench_search.py --data ../shared/data/emotion [--trials 12] [--epochs 5]

Each search is ``hparams_search=optuna`` over ``lr`` (log, 1e-5..1e-2) and
``trainer.warmup_ratio`` (0..0.3), TPE seeded alike, the tiny GPT-2 from scratch on a stratified
subset, in a fresh folder of its own. The seed noise of the best score is measured too: the
unpruned search's best parameters trained again with ``--noise-seeds`` other seeds.

Startup trials always train in full. With S of T trials at E epochs, and a pruned trial training
at least W epochs (the pruner's n_warmup_steps, at least 1), the most a pruner can save is
T*E / (S*E + (T - S)*W): 12 trials, 5 of them startup, W = 1 allow 1.9x; 3 startup allow 2.5x.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.processes import run_cli


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _study(cwd: Path):
    import optuna

    from emotion_lab.search.study import open_storage

    storage = open_storage(str(cwd / "outputs" / "optuna.journal"))
    (summary,) = storage.get_all_studies()
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _train_seconds(cwd: Path) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emotion_lab")
    runs = client.search_runs([experiment.experiment_id], "tags.`emotion_lab.role` = 'job'")
    return sum(r.data.metrics.get("train_seconds", 0.0) for r in runs)


def search(args: argparse.Namespace, pruner: str, root: Path) -> dict:
    from optuna.trial import TrialState

    cwd = root / pruner
    cwd.mkdir()
    cli = [
        "-m",
        "hparams_search=optuna",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra/sweeper/pruner={pruner}",
        # The space: these two (the command line's sweeps win over the search config's);
        # weight decay and batch size fixed, which drops them from it.
        "lr=tag(log, interval(1e-5, 1e-2))",
        "trainer.warmup_ratio=interval(0.0, 0.3)",
        "optimizer.weight_decay=0.01",
        "trainer.batch_size=32",
        f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
        *args.common,
    ]
    if pruner == "median":
        cli += [
            f"hydra.sweeper.pruner.n_startup_trials={args.startup}",
            f"hydra.sweeper.pruner.n_warmup_steps={args.warmup}",
        ]
    proc = run_cli(cli, cwd, timeout=6 * 3600)
    if proc.returncode != 0:
        raise SystemExit(f"the {pruner} search failed:\n{proc.stderr[-3000:]}")
    study = _study(cwd)
    trials = study.get_trials()
    return {
        "pruner": pruner,
        "wall_s": proc.seconds,
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "train_s": _train_seconds(cwd),
        "best": study.best_value,
        "best_params": study.best_params,
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
    }


def seed_noise(args: argparse.Namespace, params: dict, root: Path) -> list[float]:
    from mlflow.tracking import MlflowClient

    cwd = root / "seeds"
    cwd.mkdir()
    seeds = ",".join(str(100 + i) for i in range(args.noise_seeds))
    fixed = [f"{k}={v!r}" for k, v in params.items()]
    common = [o for o in args.common if not o.startswith("seed=")]
    proc = run_cli(["-m", *common, *fixed, f"seed={seeds}"], cwd, timeout=6 * 3600)
    if proc.returncode != 0:
        raise SystemExit(f"the seed runs failed:\n{proc.stderr[-3000:]}")
    client = MlflowClient(f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emotion_lab")
    runs = client.search_runs([experiment.experiment_id], "tags.`emotion_lab.role` = 'job'")
    return [r.data.metrics["best_val_macro_f1"] for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset folder or hub id")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--startup", type=int, default=3, help="startup trials (TPE and pruner)")
    parser.add_argument("--warmup", type=int, default=1, help="the pruner's n_warmup_steps")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--noise-seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.common = [
        "model=tiny_gpt2",
        "init=scratch",
        f"data.path={Path(args.data).resolve() if Path(args.data).exists() else args.data}",
        f"data.max_train_samples={args.train_samples}",
        f"data.max_eval_samples={args.eval_samples}",
        f"trainer.epochs={args.epochs}",
        # Every trial trains its epochs unless pruned: early stopping would blur what the
        # pruner saves.
        "trainer.early_stopping_patience=0",
        "tracking.log_model=false",
        f"seed={args.seed}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = [search(args, pruner, root) for pruner in ("median", "none")]
        scores = seed_noise(args, results[1]["best_params"], root) if args.noise_seeds else []
    t, e, s, w = args.trials, args.epochs, args.startup, max(args.warmup, 1)
    print(
        f"\n{datetime.date.today()}, {_cpu()}, {os.cpu_count()} cores; {t} trials of tiny_gpt2 "
        f"(scratch), {args.train_samples} training / {args.eval_samples} validation tweets, "
        f"{e} epochs; {s} startup trials, pruning from epoch {w}; most a pruner can save here: "
        f"{t * e / (s * e + (t - s) * w):.2f}x of the epochs.\n"
    )
    print("| pruner | wall s | epochs trained | training s | pruned trials | best val_macro_f1 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['pruner']} | {r['wall_s']:.0f} | {r['epochs']} | {r['train_s']:.0f} | "
            f"{r['pruned']} | {r['best']:.4f} |"
        )
    median, none = results
    print(
        f"\nmedian pruner vs none: {none['epochs'] / median['epochs']:.2f}x fewer epochs, "
        f"{none['train_s'] / median['train_s']:.2f}x less training time, "
        f"{none['wall_s'] / median['wall_s']:.2f}x less wall time; best score "
        f"{median['best'] - none['best']:+.4f}"
    )
    if scores:
        import statistics

        print(
            f"seed noise: the unpruned best parameters over {len(scores)} other seeds: "
            f"best_val_macro_f1 {statistics.mean(scores):.4f} ± {statistics.stdev(scores):.4f} "
            f"(min {min(scores):.4f}, max {max(scores):.4f})"
            if len(scores) > 1
            else f"seed noise: one other seed: {scores[0]:.4f}"
        )


if __name__ == "__main__":
    main()
