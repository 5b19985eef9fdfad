"""The ranks' process group, made without torch.distributed's global default group (so several
engines, and a user's own default group, live side by side in one process) and registered by
name, which is how the C++ engine finds it.

Every group has gloo for CPU tensors (the CPU model's collectives and, on every device, the
step plans rank 0 broadcasts) and, on CUDA, NCCL for CUDA tensors."""

from __future__ import annotations

import datetime
import os
from typing import Any

# How long one collective may wait for the other ranks; rank 0 keeps idle ranks alive with a
# heartbeat, so this bounds only a rank that hangs while the others wait.
_DEFAULT_TIMEOUT_S = 300.0


def collective_timeout() -> datetime.timedelta:
    raw = os.environ.get("TACO_TP_TIMEOUT_S", "")
    try:
        seconds = float(raw) if raw else _DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"TACO_TP_TIMEOUT_S must be a number of seconds, got {raw!r}.") from None
    if not seconds > 0:
        raise ValueError(f"TACO_TP_TIMEOUT_S must be positive, got {raw!r}.")
    return datetime.timedelta(seconds=seconds)


def open_store(host: str, port: int, world_size: int, is_master: bool) -> Any:
    """The rendezvous store: rank 0 serves it (port 0 picks a free one), the others connect."""
    import torch.distributed as dist

    return dist.TCPStore(
        host,
        port,
        world_size,
        is_master,
        timeout=datetime.timedelta(seconds=120),
        wait_for_workers=False,
    )


def create_group(store: Any, rank: int, world_size: int, device: str, name: str) -> Any:
    """Joins the group (blocks until every rank has) and registers it as `name`."""
    import torch
    import torch.distributed as dist
    from torch._C._distributed_c10d import _register_process_group

    timeout = collective_timeout()
    pg = dist.ProcessGroup(store, rank, world_size)
    gloo = dist.ProcessGroupGloo(dist.PrefixStore("gloo/", store), rank, world_size, timeout)
    gloo._set_sequence_number_for_group()
    pg._register_backend(torch.device("cpu"), dist.ProcessGroup.BackendType.GLOO, gloo)
    pg._set_default_backend(dist.ProcessGroup.BackendType.GLOO)
    if device == "cuda":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        nccl = dist.ProcessGroupNCCL(dist.PrefixStore("nccl/", store), rank, world_size, options)
        nccl._set_sequence_number_for_group()
        pg._register_backend(torch.device("cuda"), dist.ProcessGroup.BackendType.NCCL, nccl)
    _register_process_group(name, pg)
    return pg


def release_group(name: str) -> None:
    from torch._C._distributed_c10d import _unregister_process_group

    try:
        _unregister_process_group(name)
    except Exception:  # noqa: BLE001 - already gone
        pass
