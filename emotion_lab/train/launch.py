"""How this process was launched: alone, as one rank of a distributed launch, or as a task of a
submitit job. Read from the environment, so it works before any Accelerator exists (in Hydra
callbacks and config resolvers)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import psutil
from omegaconf import OmegaConf

# torchrun / accelerate launch set the first; MPI launchers (accelerate's CPU path) the others.
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def launch_rank() -> int:
    return _first_int(_RANK_VARS, 0)


def launch_world_size() -> int:
    return _first_int(_SIZE_VARS, 1)


def is_main_launch_process() -> bool:
    """Only rank 0 creates sweep runs and writes job results; other ranks just compute."""
    return launch_rank() == 0


def ranks_share_the_sweep() -> bool:
    """torchrun / accelerate launch / mpirun ranks run a whole sweep together, job after job;
    submitit starts fresh processes for each job."""
    return launch_world_size() > 1 and "SUBMITIT_EXECUTOR" not in os.environ


def launch_time(pattern: str) -> str:
    """Hydra's ``now``, but one value for every rank of a node in a distributed launch.

    torchrun, accelerate launch, srun and mpirun start a node's ranks from one parent process, so
    its start time names the output dir: the ranks share one dir instead of each making its own.
    """
    if launch_world_size() > 1:
        started = psutil.Process(os.getppid()).create_time()
        return datetime.fromtimestamp(started).strftime(pattern)
    return datetime.now().strftime(pattern)


def register_resolvers() -> None:
    # Cached like ``now``: Hydra copies the cache into each job's config, in and out of process.
    OmegaConf.register_new_resolver("launch_time", launch_time, use_cache=True, replace=True)


def export_submitit_distributed_env() -> None:
    """Inside a submitit job with several tasks, set the torch.distributed variables Accelerate
    reads, so ``hydra.launcher.tasks_per_node=N`` trains one job on N processes (GPUs)."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "RANK" in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        # Each task sees the node's GPUs and Accelerate takes the one of its local rank.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


# In a submitit job's output dir: the id of the submitit job that ran there.
SUBMITIT_JOB_FILE = "submitit_job_id"


def requeued(output_dir: Path) -> bool:
    """Inside a submitit job: whether an earlier attempt of this very job ran, which submitit
    (preemption, time limit) or SLURM (``--requeue``) requeued. A requeued job keeps its job id
    and its overrides, so it reruns in the same output dir, where each attempt notes the id."""
    from submitit import JobEnvironment

    job_id = JobEnvironment().job_id
    path = output_dir / SUBMITIT_JOB_FILE
    earlier = path.read_text().strip() if path.exists() else None
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(job_id)
    return earlier == job_id
