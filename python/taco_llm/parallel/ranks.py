"""Rank 0's view of a tensor-parallel engine's other ranks: starts them, waits until each has
started, joins their process group, explains a failure, and releases everything."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from taco_llm.parallel.launchers import ProcessLauncher, RayLauncher
from taco_llm.parallel.process_group import create_group, open_store, release_group
from taco_llm.parallel.worker import options_dict

_START_TIMEOUT_S = 120.0
_STOP_GRACE_S = 10.0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class TensorParallelRanks:
    """Ranks 1 .. N-1 of one engine and the group of all N. `options` (a `_C.EngineOptions`) gets
    the group's name; on the CPU, unless num_threads is set, the cores are shared evenly between
    the ranks of this machine."""

    def __init__(self, options: Any, backend: str, device: str) -> None:
        world = int(options.tensor_parallel_size)
        self.world_size = world
        self.group = f"taco-tp-{uuid.uuid4().hex[:12]}"
        self.closed = False
        self.pg = None
        self.store = None
        self.launcher = RayLauncher() if backend == "ray" else ProcessLauncher()
        try:
            options.distributed_group = self.group
            local_ranks = self.launcher.prepare(world, device)
            if device == "cuda" and self.launcher.rank0_device is not None:
                options.cuda_device = self.launcher.rank0_device
            threads_given = options.num_threads != 0
            if device == "cpu" and not threads_given:
                # Each rank spins its own OpenMP threads: oversubscribed cores slow every rank.
                options.num_threads = max(1, _cores() // local_ranks)
            host = self.launcher.master_host()
            self.store = open_store(host, 0, world, is_master=True)
            values = options_dict(options)
            values["cuda_device"] = 0
            if self.launcher.name == "ray" and device == "cpu" and not threads_given:
                values["num_threads"] = 1  # an actor's share: its bundle's one CPU
            specs = [
                {
                    "rank": rank,
                    "world_size": world,
                    "host": host,
                    "port": self.store.port,
                    "group": self.group,
                    "device": device,
                    "options": values,
                    "env": {k: v for k, v in os.environ.items() if k.startswith("TACO_")},
                }
                for rank in range(1, world)
            ]
            self.launcher.start(specs, device)
            self._wait_started()
            self.pg = create_group(self.store, 0, world, device, self.group)
        except BaseException:
            self.close(grace_s=0.0)
            raise

    def _wait_started(self) -> None:
        keys = [f"ready/{r}" for r in range(1, self.world_size)]
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self.store.check(keys):
            failure = self.failure()
            if failure:
                raise RuntimeError(f"tensor parallelism: {failure}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"tensor parallelism: ranks did not start within {_START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.05)

    def failure(self) -> str | None:
        """What went wrong with the other ranks, if anything: the errors they recorded and the
        ranks that have ended."""
        parts = []
        ended = self.launcher.ended()
        for rank in range(1, self.world_size):
            error = None
            if self.store is not None:
                try:
                    if self.store.check([f"error/{rank}"]):
                        error = self.store.get(f"error/{rank}").decode(errors="replace")
                except Exception:  # noqa: BLE001 - the store is gone
                    pass
            if error or rank in ended:
                how = ended.get(rank, "failed")
                parts.append(f"rank {rank} {how}" + (f" after {error}" if error else ""))
        return "; ".join(parts) or None

    def settled_failure(self, wait_s: float = 2.0) -> str | None:
        """failure(), waiting up to wait_s for it to show: a rank's death closes its connections
        a moment before its process can be seen to have ended."""
        deadline = time.monotonic() + wait_s
        failure = self.failure()
        while failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
            failure = self.failure()
        return failure

    def close(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Waits up to grace_s for the ranks to end (rank 0's engine, destroyed first, has told
        them to stop), kills what is left and releases the group."""
        if self.closed:
            return
        self.closed = True
        try:
            self.launcher.stop(grace_s)
        finally:
            release_group(self.group)
            self.pg = None
            self.store = None
