"""The search sweeper: Optuna's ask-and-tell loop over Hydra's launcher.

Each round asks the study for up to ``n_jobs`` trials, launches them as jobs (each one MLflow run
under the sweep's parent run, reporting to its trial after every epoch), and tells the study
how each ended, from the job's result.json: its objective, pruned, or failed. The study lives in
a storage (emotion_lab.search.study), so ``resume=true`` continues it: finished trials count
toward ``n_trials``, and a trial killed mid-training is launched again with its own parameters
and number, and its job continues from its checkpoint in its own MLflow run.

In a multi-process launch (accelerate launch ... -m) every rank runs the sweeper; rank 0 owns the
study and sends each round's jobs to the others, which launch the same jobs in lockstep.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.emotion_lab_search.config import register

register()

log = logging.getLogger(__name__)


class SearchSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        """``settings``: the keys of ``SearchSweeperConf`` (hydra.sweeper.*)."""
        self.sampler_cfg: DictConfig = settings["sampler"]
        self.pruner_cfg: DictConfig | None = settings["pruner"]
        self.n_trials: int = settings["n_trials"]
        self.n_jobs = max(int(settings["n_jobs"]), 1)
        self.storage_url: str | None = settings["storage"]
        self.study_name: str | None = settings["study_name"]
        self.enqueue = [
            OmegaConf.to_container(p) if isinstance(p, DictConfig) else p
            for p in settings["enqueue"]
        ]
        self.params = {str(k): str(v) for k, v in (settings["params"] or {}).items()}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        from emotion_lab.errors import UserError
        from emotion_lab.reporting import report_error
        from emotion_lab.train.launch import is_main_launch_process, ranks_share_the_sweep

        shared = ranks_share_the_sweep()
        debug = bool(self.config.get("debug", False))
        if not is_main_launch_process():
            self._follow()
            return
        try:
            search = self._open(arguments)
        except UserError as e:
            report_error(e, debug)
            if shared:
                _broadcast(self.config, "stop")
            sys.exit(1)
        try:
            search.run()
        finally:
            if shared:
                _broadcast(self.config, "stop")
        try:
            search.finish()
        except UserError as e:
            report_error(e, debug)
            sys.exit(1)

    def _open(self, arguments: list[str]) -> Search:
        return Search(self, arguments)

    def _follow(self) -> None:
        """Another rank: launch what rank 0 launches, until it says stop."""
        while True:
            batch = _broadcast(self.config, None)
            if batch == "stop":
                return
            first, overrides = batch
            self.launcher.launch(overrides, initial_job_idx=first)


def _broadcast(config: DictConfig, obj: Any) -> Any:
    """rank 0's ``obj`` on every rank, over the process group the jobs will use."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState(cpu=bool(config.trainer.get("cpu", False)))
    return broadcast_object_list([obj])[0]


class Search:
    """Rank 0's side of a search: the study, its rounds of trials, the results file."""

    def __init__(self, sweeper: SearchSweeper, arguments: list[str]) -> None:
        import optuna
        from hydra.utils import instantiate

        from emotion_lab.errors import SearchError
        from emotion_lab.redaction import redact
        from emotion_lab.search import study as studies
        from emotion_lab.search.space import grid_space, parse_space
        from emotion_lab.store.names import BEST_PREFIX
        from emotion_lab.train.launch import ranks_share_the_sweep
        from emotion_lab.train.sweep import read_sweep_file

        self.sweeper = sweeper
        self.shared = ranks_share_the_sweep()
        config = sweeper.config
        monitor = str(config.trainer.monitor)
        objective = config.get("objective") or f"{BEST_PREFIX}{monitor}"
        if objective != f"{BEST_PREFIX}{monitor}" or not monitor.startswith("val_"):
            raise SearchError(
                f"objective={objective!r}: a search optimises the best epoch's validation score, "
                f"best_<trainer.monitor> (here {BEST_PREFIX}{monitor!r}), never a test metric; to "
                "optimise another validation metric, set trainer.monitor to it."
            )
        self.objective = objective
        self.space = parse_space(sweeper.params, arguments)
        sampler_cfg = OmegaConf.to_container(sweeper.sampler_cfg, resolve=True)
        assert isinstance(sampler_cfg, dict)
        if sampler_cfg["_target_"].endswith("GridSampler"):
            sampler_cfg["search_space"] = grid_space(self.space)
        if sampler_cfg["_target_"].endswith("CmaEsSampler"):
            try:
                import cmaes  # noqa: F401
            except ImportError as e:
                raise SearchError(
                    "the CMA-ES sampler needs the cmaes package: pip install 'emotion-lab[cmaes]' "
                    "(or pick hydra/sweeper/sampler=tpe)."
                ) from e
        resume = bool(config.get("resume", False))
        info = read_sweep_file(sweeper.sweep_dir)
        self.parent_run_id = info.get("parent_run_id")
        self.url = sweeper.storage_url or studies.default_storage(str(config.paths.outputs))
        self.storage = studies.open_storage(self.url)
        self.name = sweeper.study_name or str(info["sweep_id"])
        exists = self.name in {s.study_name for s in self.storage.get_all_studies()}
        if exists and not resume:
            raise SearchError(
                f"the study {self.name!r} already exists in {redact(self.url)}: rerun with "
                "resume=true to continue it, or give another hydra.sweeper.study_name."
            )
        if sampler_cfg.get("seed") is not None:
            # A resumed search must not draw its first trials' values again: its sampler starts
            # from a seed that counts the trials already in the study (reproducible all the same).
            sampler_cfg["seed"] = int(sampler_cfg["seed"]) + studies.trial_count(
                self.storage, self.name
            )
        sampler = instantiate(sampler_cfg)
        pruner_cfg = (
            OmegaConf.to_container(sweeper.pruner_cfg, resolve=True)
            if sweeper.pruner_cfg is not None
            else {"_target_": "optuna.pruners.NopPruner"}
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=self.name,
            sampler=sampler,
            pruner=instantiate(pruner_cfg),
            direction=studies.direction_of(monitor),
            load_if_exists=True,
        )
        if not exists:
            self.study.set_user_attr(studies.PRUNER_ATTR, pruner_cfg)
            self.study.set_user_attr(studies.OBJECTIVE_ATTR, objective)
            for params in sweeper.enqueue:
                self.study.enqueue_trial(dict(params))
        self._tag_parent()
        self.studies = studies

    def _tag_parent(self) -> None:
        from emotion_lab.redaction import redact
        from emotion_lab.store import names
        from emotion_lab.store.writer import RunLogger

        if self.parent_run_id is not None:
            RunLogger(self.parent_run_id).tags(
                {names.SEARCH_STORAGE_TAG: redact(self.url), names.SEARCH_STUDY_TAG: self.name}
            )

    def run(self) -> None:
        """Rounds of up to n_jobs trials until the study holds n_trials that ended."""
        from optuna.trial import TrialState

        ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials = self.study.get_trials(deepcopy=False)
        self._write_earlier_results(trials)
        # Killed mid-training in an earlier attempt: launched again as themselves.
        again = [t for t in trials if t.state == TrialState.RUNNING]
        done = sum(t.state in ended for t in trials)
        if again:
            log.info("Resuming %d interrupted trial(s): %s", len(again), [t.number for t in again])
        while done < self.sweeper.n_trials:
            batch: list[tuple[int, dict[str, Any]]] = []
            while len(batch) < self.sweeper.n_jobs and done + len(batch) < self.sweeper.n_trials:
                if again:
                    t = again.pop(0)
                    batch.append((t.number, dict(t.params)))
                else:
                    trial = self.study.ask(self.space.distributions)
                    batch.append((trial.number, dict(trial.params)))
            for chunk in _contiguous(batch):
                self._launch(chunk)
            done += len(batch)

    def _launch(self, chunk: list[tuple[int, dict[str, Any]]]) -> None:
        from emotion_lab.search.space import as_override

        overrides = [
            [
                *self.space.fixed,
                *(as_override(k, v) for k, v in params.items()),
                as_override("trial.storage", self.url),
                as_override("trial.study", self.name),
                f"trial.number={number}",
            ]
            for number, params in chunk
        ]
        first = chunk[0][0]
        if self.shared:
            _broadcast(self.sweeper.config, (first, overrides))
        returns = self.sweeper.launcher.launch(overrides, initial_job_idx=first)
        for (number, _), ret in zip(chunk, returns, strict=True):
            self._tell(number, ret)

    def _tell(self, number: int, ret: JobReturn) -> None:
        from optuna.trial import TrialState

        from emotion_lab.train.sweep import PRUNED, RESULT_FILE

        path = self.sweeper.sweep_dir / str(number) / RESULT_FILE
        result = json.loads(path.read_text()) if path.exists() else None
        if result is not None:
            self.studies.record_result(self.storage, self.name, number, result)
        status = None if result is None else result.get("status")
        if status == "FINISHED":
            self.study.tell(number, float(result["metrics"][self.objective]))
        elif status == PRUNED:
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def _write_earlier_results(self, trials: Sequence[Any]) -> None:
        """A resumed search's summary lists the trials of earlier attempts too."""
        from emotion_lab.train.sweep import RESULT_FILE

        for t in trials:
            text = t.user_attrs.get(self.studies.RESULT_ATTR)
            path = self.sweeper.sweep_dir / str(t.number) / RESULT_FILE
            if text and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def finish(self) -> None:
        """optimization_results.yaml, the best trial on the parent run; no completed trial is an
        error (after the summary is written)."""
        import yaml
        from optuna.trial import TrialState

        from emotion_lab.errors import SearchError
        from emotion_lab.redaction import redact
        from emotion_lab.store import names
        from emotion_lab.store.writer import RunLogger
        from emotion_lab.train.sweep import SEARCH_FILE

        trials = self.study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        found: dict[str, Any] = {
            "name": "optuna",
            "study": self.name,
            "storage": redact(self.url),
            "direction": self.study.direction.name.lower(),
            "objective": self.objective,
            "trials": {k: v for k, v in counts.items() if v},
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = self.study.best_trial
            found |= {"best_trial": best.number, "best_params": best.params}
            found["best_value"] = best.value
            if self.parent_run_id is not None:
                logger = RunLogger(self.parent_run_id)
                logger.metrics({names.SEARCH_BEST_VALUE: float(best.value)})
                logger.tags(
                    {names.SEARCH_BEST_PARAM_TAG.format(key=k): v for k, v in best.params.items()}
                )
                logger.flush()
        self.sweeper.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweeper.sweep_dir / SEARCH_FILE).write_text(yaml.safe_dump(found, sort_keys=False))
        if not complete:
            ended = ", ".join(f"{v} {k}" for k, v in found["trials"].items()) or "none ran"
            raise SearchError(
                f"no trial of the search completed ({ended}): see each trial's error above. "
                "Fix it and rerun with resume=true, or widen the space or loosen the pruner "
                "(hydra/sweeper/pruner=none)."
            )


def _contiguous(batch: list[tuple[int, dict[str, Any]]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """Runs of consecutive trial numbers: each is one launch, its job numbers the trials'."""
    chunks: list[list[tuple[int, dict[str, Any]]]] = []
    for item in sorted(batch, key=lambda b: b[0]):
        if chunks and chunks[-1][-1][0] + 1 == item[0]:
            chunks[-1].append(item)
        else:
            chunks.append([item])
    return chunks
