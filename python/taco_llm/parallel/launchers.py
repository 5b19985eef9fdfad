"""Where ranks 1 .. N-1 run: local processes ("mp") or Ray actors ("ray"). A launcher starts
them, says whether any has ended (and how), and stops them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any


class ProcessLauncher:
    """One `python -m taco_llm.parallel.worker` process per rank on this machine. On CUDA rank r
    uses device r of those this process sees."""

    name = "mp"

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen] = {}

    def master_host(self) -> str:
        return "127.0.0.1"

    rank0_device = 0

    def prepare(self, world_size: int, device: str) -> int:
        """Ranks that will run on this machine."""
        return world_size

    def start(self, specs: list[dict[str, Any]], device: str) -> None:
        for spec in specs:
            rank = spec["rank"]
            if device == "cuda":
                # Every rank sees every device (so their buffers can be mapped into each other's
                # processes) and uses the rank-th.
                spec = dict(spec, options=dict(spec["options"], cuda_device=rank))
            proc = subprocess.Popen(
                [sys.executable, "-m", "taco_llm.parallel.worker"],
                stdin=subprocess.PIPE,
            )
            self.procs[rank] = proc
            assert proc.stdin is not None
            # The spec as one line; the pipe stays open: the rank exits when it closes.
            proc.stdin.write(json.dumps(spec).encode() + b"\n")
            proc.stdin.flush()

    def ended(self) -> dict[int, str]:
        """Ranks whose process has exited, each with how."""
        out = {}
        for rank, proc in self.procs.items():
            code = proc.poll()
            if code is None:
                continue
            if code < 0:
                out[rank] = f"killed by {signal.Signals(-code).name} (pid {proc.pid})"
            else:
                out[rank] = f"exited with status {code} (pid {proc.pid})"
        return out

    def stop(self, grace_s: float) -> None:
        for proc in self.procs.values():
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            grace_s = 0.1
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass


class RayLauncher:
    """One Ray actor per rank, in a placement group of N bundles (one CPU, or one GPU, each):
    rank 0 (this process) takes a bundle on this node, the actors the others, this node's first.
    Joins a running cluster (ray.init(address="auto")) or starts a local one."""

    name = "ray"

    def __init__(self) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(
                "distributed_executor_backend='ray' needs the ray package: "
                "pip install 'taco_llm[ray]' (or pip install ray)."
            ) from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address="auto", log_to_driver=True)
            except (ConnectionError, RuntimeError):
                ray.init(log_to_driver=True)
        self.actors: dict[int, Any] = {}
        self.refs: dict[int, Any] = {}
        self.placement = None
        self.bundles: list[int] = []
        self.rank0_device: int | None = None

    def master_host(self) -> str:
        return self.ray.util.get_node_ip_address()

    def prepare(self, world: int, device: str) -> int:
        """Reserves the bundles; returns how many are on this node."""
        ray = self.ray
        resource = {"GPU": 1} if device == "cuda" else {"CPU": 1}
        self.placement = ray.util.placement_group([resource] * world, strategy="PACK")
        try:
            ray.get(self.placement.ready(), timeout=60)
        except Exception:
            raise ValueError(
                f"tensor_parallel_size={world} with the Ray backend needs {world} bundles of "
                f"{resource} in the Ray cluster; it has {ray.cluster_resources()}."
            ) from None
        nodes = ray.util.placement_group_table(self.placement)["bundles_to_node_id"]
        here = ray.get_runtime_context().get_node_id()
        mine = [b for b, node in nodes.items() if node == here]
        if not mine:
            raise ValueError(
                "the Ray placement group has no bundle on this node, where rank 0 runs: "
                "start the LLM on a node of the cluster that has the resources of one rank."
            )
        self.bundles = sorted(
            (b for b in nodes if b != mine[0]), key=lambda b: (nodes[b] != here, b)
        )
        if device == "cuda":
            self.rank0_device = self._bundle_gpu(mine[0])
        return len(mine)

    def _bundle_gpu(self, bundle: int) -> int:
        """The device index, among those this process sees, of the GPU Ray reserved for rank
        0's bundle (so that no actor is given the GPU rank 0 uses)."""
        ray = self.ray
        probe = ray.remote(num_gpus=1, num_cpus=0)(lambda: ray.get_gpu_ids())
        ids = ray.get(probe.options(scheduling_strategy=self._in_bundle(bundle)).remote())
        gpu = str(ids[0])
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            names = visible.split(",")
            if gpu not in names:
                raise ValueError(
                    f"Ray reserved GPU {gpu} for rank 0, which this process does not see "
                    f"(CUDA_VISIBLE_DEVICES={visible})."
                )
            return names.index(gpu)
        return int(gpu)

    def _in_bundle(self, bundle: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(
            placement_group=self.placement, placement_group_bundle_index=bundle
        )

    def start(self, specs: list[dict[str, Any]], device: str) -> None:
        ray = self.ray
        actor_cls = ray.remote(
            num_cpus=0 if device == "cuda" else 1, num_gpus=1 if device == "cuda" else 0
        )(RankActor)
        for spec, bundle in zip(specs, self.bundles):
            actor = actor_cls.options(scheduling_strategy=self._in_bundle(bundle)).remote()
            self.actors[spec["rank"]] = actor
            self.refs[spec["rank"]] = actor.serve.remote(spec)

    def ended(self) -> dict[int, str]:
        out = {}
        if not self.ray.is_initialized():
            return {rank: "ended with Ray's shutdown" for rank in self.refs}
        for rank, ref in self.refs.items():
            done, _ = self.ray.wait([ref], timeout=0)
            if not done:
                continue
            try:
                self.ray.get(ref)
                out[rank] = "returned"
            except Exception as e:  # noqa: BLE001 - the actor died or raised
                out[rank] = f"ended: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        return out

    def stop(self, grace_s: float) -> None:
        ray = self.ray
        if not ray.is_initialized():
            return  # Ray has shut down (at interpreter exit, say): its actors went with it
        if self.refs:
            ray.wait(list(self.refs.values()), num_returns=len(self.refs), timeout=grace_s)
        for actor in self.actors.values():
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if self.placement is not None:
            try:
                ray.util.remove_placement_group(self.placement)
            except Exception:  # noqa: BLE001 - the cluster is gone
                pass
            self.placement = None


class RankActor:
    """A Ray actor running one rank (taco_llm.parallel.worker.serve)."""

    def serve(self, spec: dict[str, Any]) -> None:
        from taco_llm.parallel.worker import serve

        serve(spec)
