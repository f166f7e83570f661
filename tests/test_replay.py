"""Replay and the baseline recipes as tables of numbers: plans of the shipped shifts, the
2403.08763 worked example, exact counts through the assignment itself."""

from __future__ import annotations

from collections import Counter

import pytest

from cpt.data.mixture import assign, seen_weights, source_counts
from cpt.plan.identity import prefix_key, run_key
from cpt.plan.stages import build_plan, chain_plan

from conftest import parse

SEQ = 16_000  # sequences of one shipped stage: 1,000 steps x 16 sequences of 128 tokens


def counted(stage, n):
    """Sequences per source of a stage, counted by asking `assign` about every sequence id."""
    c = Counter(assign(i, stage.replay, stage.replay_weights)[0] for i in range(n))
    return tuple(c[k] for k in range(len(stage.replay_weights))) + (c[-1],)


def test_worked_example_of_the_papers_configs():
    # Pile 300B, then three SlimPajama splits of 100B at 5% replay (units of 1M tokens here);
    # docs/papers.md: the third split's replay is Pile 3.088%, SP1 0.962%, SP2 0.95%.
    weights = seen_weights([300_000, 100_000, 100_000, 100_000], 0.05)
    assert weights[1] == (1.0,)
    assert [round(5 * w, 4) for w in weights[2]] == [3.8125, 1.1875]  # 5 * (305, 95) / 400
    assert [round(5 * w, 3) for w in weights[3]] == [3.088, 0.962, 0.95]
    # the exact numbers behind them: seen Pile 308,812, SP1 96,188, SP2 95,000 (of 500,000)
    assert [round(w * 500_000) for w in weights[3]] == [308_812, 96_188, 95_000]
    # weighting by fresh tokens alone (300 : 95 : 95) does not give the papers' numbers
    fresh = [300, 95, 95]
    assert [round(5 * f / sum(fresh), 3) for f in fresh] == [3.061, 0.969, 0.969]


@pytest.mark.parametrize("replay,expected", [
    # stage 1 of a two-dataset chain: (replayed D0, fresh D1)
    (0.0, (0, 16_000)), (0.005, (80, 15_920)), (0.05, (800, 15_200)), (0.25, (4_000, 12_000)),
    (0.5, (8_000, 8_000)),
])
def test_replay_table_two_datasets(replay, expected):
    stages = build_plan(parse([f"replay={replay}"]))
    assert [s.replay for s in stages] == [0.0, replay]
    assert stages[1].replay_weights == (1.0,)
    assert counted(stages[1], SEQ) == expected == tuple(source_counts(SEQ, replay, [1.0])[1]) + (expected[-1],)


@pytest.mark.parametrize("replay,weights,expected", [
    # stage 2 of synthetic-3split: the split of the replays follows what was trained on so far,
    # e.g. 5%: seen D0 = 16,000 + 800, D1 = 16,000 - 800 -> 800 replays split 16,800 : 15,200.
    (0.0, (0.5, 0.5), (0, 0, 16_000)),
    (0.005, (0.5025, 0.4975), (40, 40, 15_920)),  # floor(80 * 0.5025) = 40
    (0.05, (0.525, 0.475), (420, 380, 15_200)),
    (0.25, (0.625, 0.375), (2_500, 1_500, 12_000)),
    (0.5, (0.75, 0.25), (6_000, 2_000, 8_000)),
])
def test_replay_table_three_datasets(replay, weights, expected):
    stages = build_plan(parse([f"replay={replay}", "shift=synthetic-3split"]))
    assert len(stages) == 3 and [s.dataset for s in stages] == [0, 1, 2]
    assert stages[2].replay_weights == pytest.approx(weights, abs=1e-12)
    assert counted(stages[2], SEQ) == expected
    r1 = round(SEQ * replay)
    assert counted(stages[1], SEQ) == (r1, SEQ - r1)


@pytest.mark.parametrize("n,replay,weights", [
    (16_000, 0.05, [0.6176, 0.1924, 0.19]), (999, 0.25, [0.3, 0.7]), (1000, 0.5, [1.0, 0.0, 2.0]),
    (12_345, 0.005, [1.0]), (100, 0.0, [0.5, 0.5]),
])
def test_closed_form_counts_equal_the_assignment(n, replay, weights):
    c = Counter(assign(i, replay, weights)[0] for i in range(n))
    own, per = source_counts(n, replay, weights)
    assert (own, per) == (c[-1], [c[k] for k in range(len(weights))])


@pytest.mark.parametrize("shift,n_datasets", [("synthetic-weak", 2), ("synthetic-3split", 3)])
def test_union_reads_every_dataset_for_its_budget_once(shift, n_datasets):
    (union,) = build_plan(parse([f"shift={shift}", "recipe=union"]))
    chain = chain_plan(parse([f"shift={shift}"]))
    assert union.from_scratch and union.steps == sum(s.steps for s in chain) == 1000 * n_datasets
    assert union.tokens == sum(s.tokens for s in chain)
    assert union.schedule == chain[0].schedule  # the pretrain.* recipe
    assert counted(union, union.steps * 16) == (SEQ,) * n_datasets


def test_union_mixes_unequal_budgets_in_proportion():
    # 3,000 + 1,000 steps: 64,000 sequences, 48,000 of D0 and 16,000 of D1 (3 : 1)
    (union,) = build_plan(parse(["recipe=union", "shift.datasets.0.tokens=6144000"]))
    assert union.steps == 4000 and union.replay == 0.75
    assert counted(union, 64_000) == (48_000, 16_000)


def test_scratch_and_upstream_only_stages():
    cfg = parse(["recipe=scratch", "lr.max=1e-3", "warmup=0.2"])
    (scratch,) = build_plan(cfg)
    chain = chain_plan(cfg)
    assert scratch.dataset == 1 and scratch.from_scratch and scratch.replay == 0.0
    assert scratch.steps == chain[1].steps and scratch.schedule == chain[0].schedule
    (up,) = build_plan(parse(["recipe=upstream-only", "shift=synthetic-strong-3"]))
    assert up == chain_plan(parse(["shift=synthetic-strong-3"]))[0]


# the continual knobs; the schedules here leave pretrain.schedule at cosine (an infinite one
# would not: it spans the whole chain, stage 0 included)
KNOBS = [[], ["warmup=0.05", "lr.max=6e-4", "lr.min_ratio=0.5", "replay=0.25"], ["schedule=rewarm-constant"],
         ["schedule=wsd", "schedule.decay=0.3"]]


@pytest.mark.parametrize("recipe", ["union", "scratch", "upstream-only"])
def test_continual_knobs_do_not_change_a_baseline(recipe):
    keys = set()
    for knobs in KNOBS:
        cfg = parse([f"recipe={recipe}", "shift=synthetic-3split", *knobs])
        stages = build_plan(cfg)
        keys.add((prefix_key(cfg, stages, len(stages) - 1), run_key(cfg, stages)))
    assert len(keys) == 1


def test_continual_knobs_change_the_chain_and_baselines_differ():
    cfgs = [parse(["recipe=cpt", *knobs]) for knobs in KNOBS]
    assert len({run_key(c, build_plan(c)) for c in cfgs}) == len(KNOBS)
    keys = {}
    for recipe in ("cpt", "union", "scratch", "upstream-only"):
        cfg = parse([f"recipe={recipe}"])
        keys[recipe] = run_key(cfg, build_plan(cfg))
    assert len(set(keys.values())) == 4


@pytest.mark.parametrize("overrides,needles", [
    (["replay=0.05", "shift=synthetic-3split"],
     ["stage 2 syn-en-a-split2: 1,000 steps", "replay 5.0% (syn-en-a 2.625%, syn-en-a-split1 2.375%)"]),
    (["recipe=union"], ["reference: stage 0 of the chain (syn-en-a), 1,000 steps to train",
                        "stage 0 union of syn-en-a, syn-en-b: 2,000 steps, 4,096,000 tokens",
                        "mix syn-en-a 50.000%, syn-en-b 50.000%"]),
    (["recipe=scratch"], ["stage 0 syn-en-b from scratch: 1,000 steps"]),
    (["recipe=upstream-only"], ["stage 0 syn-en-a: 1,000 steps"]),
])
def test_dry_run_describes_each_recipe(overrides, needles, tmp_path):
    from cpt.run.dry_run import describe

    text = describe(parse(overrides, tmp_path), {})
    for needle in needles:
        assert needle in text, text
    assert ("stage 1" in text) == ("recipe=cpt" in overrides or not any(o.startswith("recipe") for o in overrides))


def test_scratch_with_model_init_is_an_error():
    from cpt.errors import UserError

    with pytest.raises(UserError, match=r"^model.init=/a/checkpoint: allowed only without recipe=scratch"):
        parse(["recipe=scratch", "model.init=/a/checkpoint"])
