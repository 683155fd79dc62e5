"""Where this process stands in a launch (`accelerate launch`, torchrun), read from the launcher's
environment alone: no torch, so that a process with nothing to do can leave before importing it.

On CPUs of one machine the ranks of `annotate`, `predict` and `benchmark` are forks of local rank 0
(`annotate.distributed`): the processes the launcher started for the other ranks are idle.
"""

from __future__ import annotations

import os
import sys

from llamadna.constants import ENV_FORK_RANKS, FORK_RANKS
from llamadna.errors import ConfigError


def _flag(value: str) -> bool:
    """An environment flag as accelerate reads one (str_to_bool): 1, true, yes, y, t, on."""
    return value.strip().lower() in {"1", "true", "yes", "y", "t", "on"}


def launched() -> int:
    """The launched processes (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _can_fork() -> bool:
    """Whether ranks can be forks here: Linux (fork, and PR_SET_PDEATHSIG so that they die with
    their parent)."""
    return sys.platform.startswith("linux")


def forks_ranks(processes: int) -> bool:
    """Whether the `processes` launched processes run as forks of local rank 0: on CPUs
    (ACCELERATE_USE_CPU), all of them on this machine (LOCAL_WORLD_SIZE), on Linux, unless
    LLAMADNA_FORK_RANKS turns it off."""
    wanted = os.environ.get(ENV_FORK_RANKS)
    return (processes > 1 and _flag(os.environ.get("ACCELERATE_USE_CPU", ""))
            and int(os.environ.get("LOCAL_WORLD_SIZE", "0")) == processes
            and _can_fork() and (FORK_RANKS if wanted is None else _flag(wanted)))


def idle_process() -> bool:
    """A launched process whose rank a fork of local rank 0 runs: it has nothing to do."""
    return forks_ranks(launched()) and int(os.environ.get("LOCAL_RANK", "0")) != 0


def check_processes(processes: int) -> None:
    """--processes N, the ranks this process forks itself (`annotate.distributed`): refused below 1,
    under a launcher (which starts its own) and where ranks cannot be forks (`_can_fork`)."""
    if processes < 1:
        raise ConfigError(f"--processes {processes}: must be >= 1")
    if processes > 1 and launched() > 1:
        raise ConfigError(f"--processes {processes} under a launcher of {launched()} processes: the "
                          "launcher starts the ranks already; give one or the other")
    if processes > 1 and not _can_fork():
        raise ConfigError(f"--processes {processes}: forked ranks need Linux (this is {sys.platform}); "
                          "launch the ranks with torchrun instead (README, 'Many processes')")
