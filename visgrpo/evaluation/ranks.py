"""Data-parallel evaluation: ranks from torchrun's environment, batches sharded over them.

``torchrun --nproc_per_node N -m visgrpo.cli eval ...`` (or any launcher that sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) runs N
copies. Each loads the model on its own device (``cuda:LOCAL_RANK``), generates the
batches ``b`` with ``b % N == rank`` and appends them to its own journal
(``visgrpo.evaluation.progress``); the ranks then meet once (a gloo process group: only
small Python objects cross it), and rank 0 merges the journals in batch order, scores and
writes the tables. As a batch has the same items and seed on any rank, the merged result
equals a one-process run's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

# The ranks meet only at the end, so a rank that finishes its shard early may wait for the
# slowest one; the process group's timeout must outlast the longest shard.
MEET_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the evaluation processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: dict | None = None) -> Ranks:
        """From torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (one process if unset)."""
        env = os.environ if env is None else env
        try:
            rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
            local = int(env.get("LOCAL_RANK", rank))
        except ValueError as err:
            raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK: {err}") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
        return cls(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def batches(self, n_batches: int) -> list[int]:
        """The global batch indices this rank generates (round robin)."""
        return list(range(self.rank, n_batches, self.world))

    def start(self) -> None:
        """Join the process group (``MASTER_ADDR`` / ``MASTER_PORT``) when there are ranks."""
        import torch.distributed as dist

        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world,
                                    timeout=MEET_TIMEOUT)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (rank order) on every rank; ``[obj]`` alone."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def stop(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def n_batches(n_items: int, batch_size: int) -> int:
    return (n_items + batch_size - 1) // batch_size


def device_for(ranks: Ranks, choice: str = "auto") -> str:
    """``--device``: ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is there, else ``cpu``."""
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available():
        return f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
    return "cpu"
