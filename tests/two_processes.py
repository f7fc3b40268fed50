"""Runs a test file as a script on 2 CPU processes under torchrun (``python -m torch.distributed.run``).

The script sees the repository root and tests/ on ``PYTHONPATH`` (``vlp`` and the shared helper modules) and
``OMP_NUM_THREADS=1``; used by the tests comparing a two-process run with a one-process one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(script: str | Path, *args: object, timeout: float) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 SCRIPT ARGS``: the finished process, its output captured as text."""
    path = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    # PYTHONFAULTHANDLER: a rank that aborts prints where each of its threads was.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "PYTHONFAULTHANDLER": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *map(str, args),
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
