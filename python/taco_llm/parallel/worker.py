"""A tensor-parallel rank other than 0: joins the group, loads its shard and runs rank 0's steps
until rank 0's engine stops. Local ranks run it as `python -m taco_llm.parallel.worker` with the
rank's spec as JSON on stdin; Ray actors call serve() directly.

A rank that fails (bad model file, out of memory, a lost peer) records the error in the
rendezvous store, where rank 0 reads it to say which rank failed and why, and exits: its closed
connections end any collective rank 0 is waiting in. A local rank also exits when rank 0 does
(its stdin pipe closes)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def engine_options(options_cls: type, values: dict[str, Any]) -> Any:
    """A `_C.EngineOptions` from the dict rank 0 sent (`options_dict`'s output)."""
    o = options_cls()
    for name, value in values.items():
        setattr(o, name, value)
    return o


def options_dict(options: Any) -> dict[str, Any]:
    return {name: getattr(options, name) for name in type(options).fields}


def serve(spec: dict[str, Any]) -> None:
    import torch  # noqa: F401  (the extension links torch's libraries)

    from taco_llm import _C
    from taco_llm.parallel.process_group import create_group, open_store, release_group

    # Rank 0's TACO_* settings (timeouts, heartbeat, CPU level) hold on every rank, Ray actors
    # included, which do not inherit its environment.
    os.environ.update(spec.get("env", {}))
    rank, world = int(spec["rank"]), int(spec["world_size"])
    store = open_store(spec["host"], int(spec["port"]), world, is_master=False)
    try:
        store.set(f"ready/{rank}", str(os.getpid()))
        group = create_group(store, rank, world, spec["device"], spec["group"])  # noqa: F841
        # (the registry holds the group weakly: `group` keeps it alive while the rank runs)
        _C.run_tensor_parallel_worker(engine_options(_C.EngineOptions, spec["options"]))
    except BaseException as e:
        try:
            store.set(f"error/{rank}", f"{type(e).__name__}: {e}")
        except Exception:  # noqa: BLE001 - rank 0 is gone: nobody to tell
            pass
        raise
    finally:
        release_group(spec["group"])


def _exit_when_parent_goes() -> None:
    """Exits this process when rank 0 closes this rank's stdin or exits, however it exits (its
    end of the pipe closes with it): a watcher thread blocks reading the pipe."""
    import threading

    def watch() -> None:
        # The file descriptor, not sys.stdin: a thread blocked inside the buffered reader holds
        # its lock, and the interpreter's shutdown after a normal exit then aborts on it.
        try:
            while os.read(sys.stdin.fileno(), 1 << 16):
                pass
        except (OSError, ValueError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="taco-tp-parent-watch", daemon=True).start()


def main() -> int:
    # The spec is the first line on stdin; rank 0 keeps the pipe open while this rank runs.
    spec = json.loads(sys.stdin.buffer.readline())
    _exit_when_parent_goes()
    try:
        serve(spec)
    except BaseException as e:  # noqa: BLE001 - reported through the store; exit non-zero
        print(
            f"taco_llm tensor-parallel rank {spec['rank']}: {type(e).__name__}: {e}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
