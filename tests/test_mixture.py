"""The replay assignment: exact shares, same fresh order at every replay level."""

import pytest

from cpt.data.mixture import affine_permutation, assign


def sources(n, replay, weights):
    return [assign(i, replay, weights) for i in range(n)]


@pytest.mark.parametrize("replay,n,expected_replays", [
    (0.0, 1000, 0), (0.005, 1000, 5), (0.05, 1000, 50), (0.25, 1000, 250), (0.5, 1000, 500),
    (0.05, 999, 49),  # floor(999 · 0.05) = 49
])
def test_replay_count_is_exact(replay, n, expected_replays):
    got = sum(1 for s, _ in sources(n, replay, [1.0]) if s >= 0)
    assert got == expected_replays


@pytest.mark.parametrize("replay", [0.005, 0.05, 0.25, 0.5])
def test_every_prefix_within_one_sequence(replay):
    seen = 0
    for i, (s, _) in enumerate(sources(2000, replay, [1.0]), start=1):
        seen += s >= 0
        assert abs(seen - replay * i) < 1.0


def test_positions_of_5_percent():
    # Bresenham: sequence i is replay iff floor((i+1)·r) > floor(i·r): i = 19, 39, 59, ...
    replays = [i for i, (s, _) in enumerate(sources(100, 0.05, [1.0])) if s >= 0]
    assert replays == [19, 39, 59, 79, 99]


@pytest.mark.parametrize("replay", [0.005, 0.05, 0.25, 0.5])
def test_fresh_order_is_the_same_at_every_level(replay):
    fresh = [k for s, k in sources(1000, replay, [1.0]) if s < 0]
    assert fresh == list(range(len(fresh)))  # the j-th fresh sequence is draw j of the dataset


def test_three_datasets_split_by_weight():
    # 5% replay split 0.6 / 0.4 over two earlier datasets: 10000 sequences -> 500 replays -> 300 / 200.
    got = sources(10000, 0.05, [0.6, 0.4])
    assert sum(1 for s, _ in got if s == 0) == 300
    assert sum(1 for s, _ in got if s == 1) == 200
    assert sum(1 for s, _ in got if s == -1) == 9500
    # draws from each source are numbered 0, 1, 2, ... in order
    for src in (0, 1):
        assert [k for s, k in got if s == src] == list(range(300 if src == 0 else 200))


def test_affine_permutation_is_a_permutation():
    for n in (1, 7, 64, 1000):
        assert sorted(affine_permutation(j, n, 3) for j in range(n)) == list(range(n))
