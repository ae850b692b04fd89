"""StreamSampler: per-pass permutations, per-rank shards of whole batches, positioned by the step."""

from __future__ import annotations

import itertools
import re

import pytest
from torch.utils.data import DataLoader, Dataset

from vidssl.data.samplers import ENDLESS, StreamSampler
from vidssl.errors import ConfigError


def take(sampler, n: int) -> list[int]:
    return list(itertools.islice(iter(sampler), n))


class Counter:
    """A position callable the test moves by hand (the optimiser step)."""

    def __init__(self, value: int = 0):
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_each_pass_is_a_new_permutation_reproducible_from_the_seed():
    sampler = StreamSampler(10, 2, seed=3)
    assert sampler.batches_per_pass == 5 and len(sampler) == 10
    passes = [sampler.indices_of_pass(p) for p in range(4)]
    for order in passes:
        assert sorted(order) == list(range(10))  # one world, 10 = 5 whole batches: every item once
    assert len({tuple(order) for order in passes}) == 4  # a new order every pass
    assert passes != [list(range(10))] * 4
    again = StreamSampler(10, 2, seed=3)
    assert [again.indices_of_pass(p) for p in range(4)] == passes  # the seed decides
    assert StreamSampler(10, 2, seed=4).indices_of_pass(0) != passes[0]
    assert list(sampler) == passes[0]  # position 0: pass 0, whose indices are not shifted
    unshuffled = StreamSampler(10, 2, seed=3, shuffle=False)
    assert [unshuffled.indices_of_pass(p) for p in range(2)] == [list(range(10))] * 2


def test_indices_past_the_first_pass_encode_it():
    sampler = StreamSampler(10, 2, seed=1, position=lambda: 5)  # one whole pass delivered
    assert list(sampler) == [10 + i for i in sampler.indices_of_pass(1)]
    sampler = StreamSampler(10, 2, seed=1, position=lambda: 3 * 5 + 2)  # pass 3, batch 2
    assert list(sampler) == [30 + i for i in sampler.indices_of_pass(3)[4:]]


def test_ranks_get_disjoint_shards_of_whole_batches():
    length, batch, world = 23, 3, 2
    shards = [StreamSampler(length, batch, seed=5, rank=r, world_size=world) for r in range(world)]
    single = StreamSampler(length, 1, seed=5).indices_of_pass(0)  # the pass's permutation, whole
    assert sorted(single) == list(range(length))
    for p in range(3):
        mine = [s.indices_of_pass(p) for s in shards]
        assert [len(m) for m in mine] == [9, 9]  # (23 // 2) // 3 = 3 whole batches each
        assert not set(mine[0]) & set(mine[1])
        assert len(set(mine[0])) == 9 and len(set(mine[1])) == 9
        whole = StreamSampler(length, 1, seed=5).indices_of_pass(p)
        assert mine[0] == whole[0:18:2] and mine[1] == whole[1:18:2]  # every world-th index of one permutation
    assert [len(s) for s in shards] == [9, 9]
    assert [s.batches_per_pass for s in shards] == [3, 3]
    # through DataLoaders: both ranks make the same number of full batches
    loaders = [DataLoader(Items(length), batch_size=batch, sampler=s, drop_last=True) for s in shards]
    batches = [[b.tolist() for b in loader] for loader in loaders]
    assert [len(b) for b in batches] == [3, 3] and all(len(x) == batch for b in batches for x in b)


class Items(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return index


def test_iteration_starts_at_the_position():
    position = Counter()
    uninterrupted = StreamSampler(12, 3, seed=0, position=position, cycle=True)
    sequence = take(uninterrupted, 3 * 12)  # three passes
    for steps in (0, 1, 3, 4, 5, 9):  # resumed after `steps` batches: exactly the rest of the sequence
        resumed = StreamSampler(12, 3, seed=0, position=Counter(steps), cycle=True)
        assert take(resumed, len(sequence) - 3 * steps) == sequence[3 * steps :]
    # the position is read when iteration starts, not when the sampler is made
    primary = StreamSampler(12, 3, seed=0, position=position)
    position.value = 2
    assert list(primary) == sequence[6:12]  # the rest of pass 0, and the pass ends there
    position.value = 4  # the next epoch: pass 1 from its start
    assert list(primary) == sequence[12:24]
    assert all(12 <= i < 24 for i in sequence[12:24]) and sorted(i - 12 for i in sequence[12:24]) == list(range(12))


def test_a_primary_stream_ends_with_its_pass_and_a_cycling_one_runs_on():
    primary = StreamSampler(7, 2, seed=2)
    assert len(primary) == 6 and len(list(primary)) == 6  # 3 whole batches, the 7th item left out
    cycling = StreamSampler(7, 2, seed=2, cycle=True)
    assert len(cycling) == ENDLESS
    stream = take(cycling, 6 * 4)
    for p in range(4):  # pass p: its own permutation, offset by p · len
        assert stream[6 * p : 6 * (p + 1)] == [7 * p + i for i in cycling.indices_of_pass(p)]
    # a DataLoader over it keeps delivering whole batches across pass boundaries
    loader = DataLoader(Items(10**6), batch_size=2, sampler=StreamSampler(7, 2, seed=2, cycle=True), drop_last=True)
    batches = [b.tolist() for b in itertools.islice(iter(loader), 7)]
    assert batches == [stream[2 * k : 2 * k + 2] for k in range(7)]


def test_too_small_datasets_and_bad_batch_sizes():
    with pytest.raises(ConfigError, match=re.escape(
            "the dataset has 5 items, fewer than one batch (3 × 2 processes); lower the batch size")):
        StreamSampler(5, 3, world_size=2)
    with pytest.raises(ConfigError, match=re.escape("batch size must be >= 1, got 0")):
        StreamSampler(5, 0)
    assert StreamSampler(6, 3, world_size=2).batches_per_pass == 1  # exactly one batch per process fits
