"""Atomic checkpoints of the whole training state, so an interrupted job resumes where it was.

A checkpoint is Accelerate's ``save_state`` (model, optimizer, scheduler, RNG of every process)
plus the loop's ``TrainState`` (loop position, running loss sums, early-stopping memory; defined
in ``train/loop.py``). It is written to a temporary folder and renamed into place; ``latest`` is
replaced atomically after that, so a kill at any moment leaves the previous checkpoint intact
and ``latest`` pointing at a complete one. A write that fails for lack of space removes its
partial folder and ends the job with one line that says what to free; the previous checkpoint
stays.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator

from emotion_lab.errors import DiskFull
from emotion_lab.faults import fault_point
from emotion_lab.storage import (
    SpaceProblem,
    free_bytes,
    megabytes,
    replace_atomically,
    space_problem,
    tree_bytes,
    write_text_atomically,
)

if TYPE_CHECKING:
    from emotion_lab.train.loop import TrainState

LATEST = "latest"
BEST = "best_model.pt"


class Checkpointer:
    """Saves to ``root`` at epoch ends and every ``every_n_steps`` optimizer steps (0 = never).

    With ``root=None`` nothing is written and the best weights stay in memory only.
    """

    def __init__(
        self, accelerator: Accelerator, state: TrainState, root: Path | None, every_n_steps: int
    ) -> None:
        self.accelerator = accelerator
        self.state = state
        self.root = root
        self.every_n_steps = every_n_steps
        accelerator.register_for_checkpointing(state)
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def step_due(self) -> bool:
        return self.enabled and self.every_n_steps > 0 and self.state.step % self.every_n_steps == 0

    def save(self) -> None:
        if self.root is None:
            return
        acc = self.accelerator
        name = (
            f"step-{self.state.step:08d}-epoch-{self.state.epoch}-batch-{self.state.batches_done}"
        )
        tmp = self.root / f".tmp-{name}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            self._check_space()
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            self._raise_if_no_space(e, "a checkpoint", self._state_sizes())
            raise
        fault_point("checkpoint_write")
        acc.wait_for_everyone()
        if acc.is_main_process:
            final = self.root / name
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fault_point("checkpoint_write")
            write_text_atomically(self.root / LATEST, name)
            fault_point("checkpoint_write")
            for old in self.root.glob("step-*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _state_sizes(self) -> tuple[int, int]:
        """Bytes of the model's and the optimizer's states: the big files of a checkpoint."""
        acc = self.accelerator
        model = sum(
            t.numel() * t.element_size() for m in acc._models for t in m.state_dict().values()
        )
        optimizer = sum(
            t.numel() * t.element_size()
            for o in acc._optimizers
            for state in o.state_dict()["state"].values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        )
        return model, optimizer

    def _check_space(self) -> None:
        """Refuse before writing when the disk cannot hold another checkpoint of the last
        one's size (the two coexist until the new one is complete)."""
        latest = self.latest()
        needed = tree_bytes(latest) if latest is not None else sum(self._state_sizes())
        free = free_bytes(self.root)
        if free < needed:
            why = f"{megabytes(free)} free there, it needs about {megabytes(needed)}"
            self._raise_no_space("a checkpoint", SpaceProblem(why, "free space on that disk"))

    def _raise_if_no_space(self, error: Exception, what: str, sizes: tuple[int, ...]) -> None:
        problem = space_problem(error, self.root, sizes)
        if problem is not None:
            self._raise_no_space(what, problem, error)

    def _raise_no_space(
        self, what: str, problem: SpaceProblem, error: Exception | None = None
    ) -> None:
        """One line: what failed, why, what to free, and that the last checkpoint is kept."""
        assert self.root is not None
        others = sum(tree_bytes(p) for p in self.root.parent.iterdir() if p != self.root)
        where = (
            f" (checkpoints of other runs in {self.root.parent} take {megabytes(others)}; "
            "`python -m emotion_lab.runs` lists the unfinished runs)"
            if others and problem.disk_full
            else ""
        )
        latest = self.latest()
        kept = f"the last good checkpoint ({latest.name}) is kept" if latest else "nothing is lost"
        raise DiskFull(
            f"cannot write {what} to {self.root}: {problem.why}. To go on, {problem.remedy}"
            f"{where}, then rerun with resume=true: {kept}."
        ) from error

    def latest(self) -> Path | None:
        if self.root is None or not (self.root / LATEST).exists():
            return None
        path = self.root / (self.root / LATEST).read_text().strip()
        return path if path.is_dir() else None

    def restore(self) -> bool:
        """Load the latest checkpoint into the prepared objects and ``state``, if there is one."""
        path = self.latest()
        if path is None:
            return False
        self.accelerator.load_state(str(path))
        if self.accelerator.is_main_process:
            # Partial writes of a killed job.
            for partial in self.root.glob(".tmp-*"):
                shutil.rmtree(partial, ignore_errors=True)
        return True

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        if self.root is None or not self.accelerator.is_main_process:
            return

        def write(tmp: Path) -> None:
            torch.save(weights, tmp)
            fault_point("checkpoint_write")

        try:
            replace_atomically(self.root / BEST, write)
        except Exception as e:
            self._raise_if_no_space(e, "the best weights", self._state_sizes()[:1])
            raise

    def load_best(self) -> dict[str, torch.Tensor]:
        if self.root is None or not (self.root / BEST).exists():
            return {}
        return torch.load(self.root / BEST, map_location="cpu", weights_only=True)

    def remove(self) -> None:
        """Called once the run is finished and its model is in MLflow."""
        if self.root is not None and self.accelerator.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)
