"""Samplers positioned by the training step, so a killed run resumes on exactly the same items.

A :class:`StreamSampler` gives one process its share of a shuffled pass over a dataset (a new
permutation per pass: ``seed`` and pass number) in whole batches. Where it starts is not kept in
the sampler but read from ``position()`` (the number of batches this stream has delivered, i.e.
the optimiser step) each time a loader is iterated: a fresh run starts at 0, a run resumed at
step N starts at batch ``N mod batches_per_pass`` of pass ``N div batches_per_pass``, with no
sampler state to save. Each index it yields is ``pass · len(dataset) + i``, so the dataset
draws the item's random views for that pass (:class:`vidssl.data.datasets.VideoDataset`)
whatever the worker and however far ahead the loader prefetches.

The *primary* stream of a run ends its pass (one Lightning epoch); the others ``cycle``: they
run on across their own pass boundaries, however their lengths compare to the primary's.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from vidssl.errors import ConfigError

__all__ = ["StreamSampler"]

#: ``len()`` of a cycling sampler: large, so that the primary stream decides the epoch's length.
ENDLESS = 2**40


class StreamSampler(torch.utils.data.Sampler[int]):
    """Shuffled per-process indices of one data stream, starting at the current step.

    Args:
        length: items in the dataset.
        batch_size: items per batch on this process.
        seed: seed of the per-pass permutations.
        rank, world_size: this process and the number of processes (each takes every
            ``world_size``-th index of the permutation).
        position: callable returning how many batches this stream has delivered so far.
        cycle: run on across passes (secondary streams) instead of ending with the pass.
        shuffle: False keeps dataset order (every pass alike).
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 position: Callable[[], int] = lambda: 0, cycle: bool = False, shuffle: bool = True) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if length < batch_size * world_size:
            raise ConfigError(f"the dataset has {length} items, fewer than one batch ({batch_size} × {world_size} "
                              "processes); lower the batch size")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.position, self.cycle, self.shuffle = position, cycle, shuffle
        self.batches_per_pass = (length // world_size) // batch_size

    def __len__(self) -> int:
        return ENDLESS if self.cycle else self.batches_per_pass * self.batch_size

    def indices_of_pass(self, pass_index: int) -> list[int]:
        """This process's dataset indices of pass ``pass_index``, whole batches only."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + pass_index)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        mine = order[self.rank :: self.world_size]
        return mine[: self.batches_per_pass * self.batch_size]

    def __iter__(self) -> Iterator[int]:
        pass_index, skip = divmod(int(self.position()), self.batches_per_pass)
        while True:
            offset = pass_index * self.length
            for i in self.indices_of_pass(pass_index)[skip * self.batch_size :]:
                yield offset + i
            if not self.cycle:
                return
            pass_index, skip = pass_index + 1, 0
