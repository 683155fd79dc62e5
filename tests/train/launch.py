"""`llamadna train` (or another command) as CPU processes (torchrun; accelerate picks gloo), for
the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def torchrun_train(*args: str, use_cpu: bool = True, nproc: int = 2) -> subprocess.CompletedProcess:
    return torchrun_cli("train", *args, use_cpu=use_cpu, nproc=nproc)


def torchrun_command(command: str, *args: str, use_cpu: bool = True, nproc: int = 2,
                     env: dict | None = None) -> tuple[list[str], dict]:
    """The command line and environment of `llamadna COMMAND ARGS` as `nproc` processes (`env`:
    more variables)."""
    extra = env or {}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # CPU processes: torchrun + ACCELERATE_USE_CPU (accelerate launch uses torchrun for GPUs)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "llamadna.cli", command, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2]),
           "COLUMNS": "400", **extra}
    env.pop("ACCELERATE_USE_CPU", None)
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return cmd, env


def torchrun_cli(command: str, *args: str, use_cpu: bool = True, nproc: int = 2,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """`llamadna COMMAND ARGS` as `nproc` processes (`env`: more variables)."""
    cmd, env = torchrun_command(command, *args, use_cpu=use_cpu, nproc=nproc, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
