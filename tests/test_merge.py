"""recipe=merge: weight interpolation and soups (pure, in milliseconds), then tiny real merges of a
2-stage and a 3-stage chain: α = 0 gives the losses of the weights the last stage started from,
α = 1 the cpt run's own, a soup of one run is that run; the cpt run keeps its final weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from cpt.errors import UserError
from cpt.model.merge import Mismatch, average, interpolate
from cpt.plan.identity import prefix_key
from cpt.plan.stages import build_plan
from cpt.run.merge import check_soup
from cpt.store.prefix_cache import PrefixCache

from conftest import TINY, _tiny_budgets, parse
from test_end_to_end import client, run_tiny


def sd(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g),
            "steps": torch.tensor([seed, 7])}


# -- the arithmetic (pure) -------------------------------------------------------------------


def test_interpolate_ends_are_the_inputs_exactly_and_the_middle_is_the_mean():
    a, b = sd(1), sd(1) | {"w": sd(2)["w"], "b": sd(2)["b"]}
    for k in a:
        assert torch.equal(interpolate(a, b, 0.0)[k], a[k]) and torch.equal(interpolate(a, b, 1.0)[k], b[k])
    mid = interpolate(a, b, 0.5)
    assert torch.allclose(mid["w"], (a["w"] + b["w"]) / 2, atol=1e-7)
    assert torch.allclose(interpolate(a, b, 1.5)["w"], b["w"] + 0.5 * (b["w"] - a["w"]), atol=1e-6)
    assert mid["w"].dtype == torch.float32 and torch.equal(mid["steps"], a["steps"])


def test_average_of_one_is_itself_and_weights_are_normalised():
    a, b = sd(1), sd(1) | {"w": sd(2)["w"]}
    assert all(torch.equal(average([a])[k], a[k]) for k in a)
    assert torch.allclose(average([a, b], [3, 1])["w"], 0.75 * a["w"] + 0.25 * b["w"], atol=1e-7)
    assert torch.allclose(average([a, b])["w"], interpolate(a, b, 0.5)["w"], atol=1e-7)
    with pytest.raises(ValueError):
        average([a, b], [0, 0])


def test_other_shapes_or_differing_integer_buffers_are_refused():
    a = sd(1)
    with pytest.raises(Mismatch, match="w"):
        average([a, a | {"w": torch.zeros(4, 3)}])
    with pytest.raises(Mismatch, match="steps"):
        interpolate(a, sd(2), 0.5)


def test_a_soup_refuses_runs_of_another_stage_0_or_recipe():
    def rec(rid, ref="s0", recipe="cpt", status="FINISHED"):
        return {"run_id": rid, "status": status, "tags": {"cpt.recipe": recipe, "cpt.kind": "run",
                                                          "cpt.reference_key": ref}}

    check_soup([rec("a"), rec("b")], "s0", [1, 2])
    for bad, why in [([rec("a", ref="other")], "stage 0"), ([rec("a", recipe="union")], "recipe=cpt"),
                     ([rec("a", status="FAILED")], "finished"), ([rec("a"), rec("a")], "twice"),
                     ([rec("a")], "weights")]:
        with pytest.raises(UserError, match=why) as e:
            check_soup(bad, "s0", [1, 2] if why == "weights" else [])
        assert "\n" not in str(e.value) and str(e.value).startswith("merge.runs: ")


def test_merge_keys_are_checked():
    with pytest.raises(UserError, match="merge.runs"):
        parse(["merge.runs=[abc]"])
    with pytest.raises(UserError, match="merge.alphas"):
        parse(["recipe=merge", "merge.alphas=[]"])
    with pytest.raises(UserError, match="merge.weights"):
        parse(["recipe=merge", "merge.runs=[a,b]", "merge.weights=[-1,1]"])


# -- tiny real merges --------------------------------------------------------------------------

THREE = ["shift=synthetic-3split", *_tiny_budgets("synthetic-3split")]


@pytest.fixture(scope="module")
def merged(tmp_path_factory, prepared_root):
    """recipe=merge on a 2-stage and a 3-stage chain (each trains its cpt run once, through the
    cache), one output dir; then the 2-stage merge again with one more α."""
    out = tmp_path_factory.mktemp("merge") / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(prepared_root / sub, out / sub)
    r = {}
    _, r["two"] = run_tiny(out, ["recipe=merge", "merge.alphas=[0,0.5,1]"], name="two")
    _, r["three"] = run_tiny(out, ["recipe=merge", "merge.alphas=[1,0]", *THREE], name="three")
    _, r["again"] = run_tiny(out, ["recipe=merge", "merge.alphas=[0,0.5,1,0.25]"], name="again")
    return out, r


def merge_runs(out, name):
    c = client(out)
    exp = c.get_experiment_by_name("cpt")
    runs = c.search_runs([exp.experiment_id], "tags.`cpt.recipe` = 'merge'")
    return {float(r.data.params["merge.alpha"]): r for r in runs if r.info.run_name.startswith(name + " ")}


def check_ends(out, name, names):
    runs = merge_runs(out, name)
    cpt = client(out).get_run(runs[1.0].data.tags["cpt.merge.of"])
    assert cpt.data.tags["cpt.recipe"] == "cpt" and cpt.data.tags["cpt.kind"] == "run"
    # the final weights are the entry of the whole chain, by prefix key (not run key)
    cfg = parse(TINY + (THREE if len(names) == 3 else []), out)
    entry = PrefixCache(out / "cache").get(prefix_key(cfg, build_plan(cfg), len(names) - 1))
    assert entry is not None and entry.result["run_id"] == cpt.info.run_id
    start = sorted(client(out).get_metric_history(cpt.info.run_id, f"val/{names[-1]}/loss"), key=lambda h: h.step)[0]
    for n in names:
        assert runs[1.0].data.metrics[f"final/{n}/loss"] == pytest.approx(cpt.data.metrics[f"final/{n}/loss"], abs=1e-6)
        assert runs[0.0].data.metrics[f"final/{n}/loss"] == pytest.approx(entry.result["val_at_start"][n], abs=1e-6)
    assert runs[0.0].data.metrics[f"final/{names[-1]}/loss"] == pytest.approx(start.value, abs=1e-6)
    for key in ("forgetting", "adaptation", "final/avg_loss"):
        assert runs[1.0].data.metrics[key] == pytest.approx(cpt.data.metrics[key], abs=1e-6)
    assert runs[0.0].data.metrics["adaptation"] == pytest.approx(0.0, abs=1e-6)
    return runs


@pytest.mark.slow
def test_alpha_0_and_1_are_the_start_and_the_run_on_two_stages(merged):
    out, r = merged
    runs = check_ends(out, "two", ["syn-en-a", "syn-en-b"])
    assert set(runs) == {0.0, 0.5, 1.0}
    assert len({x.data.tags["cpt.run_key"] for x in runs.values()}) == 3
    for a, x in runs.items():
        assert x.data.tags["cpt.merge.alpha"] == str(a) and x.info.status == "FINISHED"
        assert x.data.metrics["compute/tokens"] == 0


@pytest.mark.slow
def test_alpha_0_and_1_are_the_start_and_the_run_on_three_stages(merged):
    out, _ = merged
    names = [d.name for d in parse(TINY + THREE).shift.datasets]
    check_ends(out, "three", names)


@pytest.mark.slow
def test_a_rerun_skips_the_finished_alphas_and_adds_the_new_one(merged):
    out, r = merged
    again = merge_runs(out, "again")
    assert set(again) == {0.25}  # 0, 0.5, 1 finished already: skipped, not logged again
    assert not r["again"].skipped and r["again"].run_id == again[0.25].info.run_id
    assert len([x for x in merge_runs(out, "two")]) == 3


@pytest.mark.slow
def test_a_soup_of_one_run_is_that_run(merged):
    out, _ = merged
    cpt_id = merge_runs(out, "two")[1.0].data.tags["cpt.merge.of"]
    _, soup = run_tiny(out, ["recipe=merge", f"merge.runs=[{cpt_id}]"], name="soup")
    got, want = client(out).get_run(soup.run_id).data, client(out).get_run(cpt_id).data
    assert got.tags["cpt.merge.runs"] == cpt_id
    for n in ("syn-en-a", "syn-en-b"):
        assert got.metrics[f"final/{n}/loss"] == pytest.approx(want.metrics[f"final/{n}/loss"], abs=1e-6)
    with pytest.raises(UserError, match="neither an MLflow run nor a sweep"):
        run_tiny(out, ["recipe=merge", "merge.runs=[0123456789abcdef0123456789abcdef]"], name="bad")
