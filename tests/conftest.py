"""Shared by every test: under pytest-xdist (``make test`` runs ``-n 2``), each worker computes on one
thread, so two workers share the cores instead of fighting over them (two threads each on two cores
made some steps many times slower). The child processes a test starts (notebook kernels, ``cotlab``
commands, DDP ranks) inherit the setting."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
