"""bench/gpu_check.py's pure parts, in milliseconds: no training, no GPU, no subprocess."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check as g  # noqa: E402


@pytest.mark.parametrize("text, want", [
    ("tests/test_gpu.py ...ss\n3 passed, 2 skipped in 95.12s (0:01:35)\n", (3, 0, 0, 2)),
    ("..F\nFAILED tests/test_gpu.py::test_one_gpu_bf16[extra1] - assert 1 passed\n"
     "1 failed, 2 passed, 1 error, 2 skipped in 3.01s\n", (2, 1, 1, 2)),
    ("5 skipped in 1.20s\n", (0, 0, 0, 5)),
    ("2 errors in 0.5s\n", (0, 0, 2, 0)),
    ("Traceback (most recent call last):\nImportError: no module\n", (0, 0, 0, 0)),  # no summary: nothing passed
])
def test_parse_pytest_reads_the_closing_line(text, want):
    n = g.parse_pytest(text)
    assert (n["passed"], n["failed"], n["errors"], n["skipped"]) == want


def test_oom_steady_and_deltas():
    assert g.is_oom("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert not g.is_oom("RuntimeError: CUDA error: device-side assert triggered")
    assert g.steady([900.0, 1.0, 2.0, 3.0]) == 2.5 and g.steady([5.0]) == 5.0 and g.steady([]) is None
    assert g.max_delta({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.0}) == 0.5
    assert g.max_delta({1: 1.0, 2: 1.0}, {1: 1.0}) == float("inf")  # a lost step is not "equal"
    assert g.max_delta({}, {}) == float("inf")  # nothing logged: nothing to call equal


def test_budget_grants_each_check_its_timeout_or_what_is_left_then_skips():
    now, granted, saved = [0.0], [], []

    def call(name, fn, timeout):
        granted.append((name, timeout))
        now[0] += fn
        return g.Check(name, "PASS", "ok", wall_s=fn)

    checks = [("a", 60, 50), ("b", 20, 50), ("c", 1, 50), ("d", 1, 10)]  # (name, seconds it takes, timeout)
    out = g.run_all(checks, 100, call, done=lambda cs: saved.append(len(cs)), clock=lambda: now[0])
    assert granted == [("a", 50), ("b", 40)]  # b: 40 s left of 100
    assert [c.status for c in out] == ["PASS", "PASS", "SKIP", "SKIP"] and saved == [1, 2, 3, 4]
    assert out[2].line() == f"SKIP  c: budget spent (20 s of 100 s left, a check needs {g.MIN_CHECK_S} s)"
    assert out[0].line() == "PASS  a: ok (60 s)"


def test_check_line_names_the_peaks_it_has():
    c = g.Check("mfu", "FAIL", "x", wall_s=12.4, peak_allocated_gib=3.04, peak_used_gib=None)
    assert c.line() == "FAIL  mfu: x (12 s, peak 3.0 GiB allocated)"


def test_rewrite_section_replaces_only_the_gpu_section():
    text = "# B\n\n## Latest\n\nrows\n\n## GPU\n\nold\n### sub\nold too\n\n## After\n\nkept\n"
    new = g.rewrite_section(text, "| t |\n")
    assert new == "# B\n\n## Latest\n\nrows\n\n## GPU\n\n| t |\n\n## After\n\nkept\n"
    assert g.rewrite_section(new, "| t |\n") == new  # rewriting again changes nothing
    assert g.rewrite_section("# B\n\n## GPU\n\nold\n", "| t |\n") == "# B\n\n## GPU\n\n| t |\n"  # last section
    assert g.rewrite_section("# B\n\n## GPUs\n\nx\n", "| t |\n") == "# B\n\n## GPUs\n\nx\n\n## GPU\n\n| t |\n"


def test_rewrite_of_the_real_readme_keeps_everything_before_the_section():
    text = (ROOT / "bench" / "README.md").read_text()
    new = g.rewrite_section(text, "BODY\n")
    head = text[:text.index("\n## GPU\n")]
    assert new.startswith(head) and "\n## GPU\n\nBODY\n" in new and "BODY" not in text


def test_table_has_a_row_per_check_and_escapes_pipes():
    m = {"device": "NVIDIA H200", "driver": "550.54", "torch": "2.5.1", "cuda": "12.4", "date": "2026-12-01",
         "commit": "abc1234"}
    checks = [g.Check("default", "PASS", "|Δ final loss| 0.004", wall_s=50, peak_allocated_gib=1.25),
              g.Check("fsdp-resume", "SKIP", "budget spent")]
    t = g.table(m, checks, 480).splitlines()
    assert "on NVIDIA H200 (driver 550.54, torch 2.5.1, CUDA 12.4), 2026-12-01, commit abc1234: 50 s of a 480 s" in t[0]
    assert t[4] == r"| default | PASS | \|Δ final loss\| 0.004 | 1.2 GiB | — | 50 s |"
    assert t[5] == "| fsdp-resume | SKIP | budget spent | — | — | 0 s |" and len(t) == 6


def test_commands(capsys, tmp_path):
    # One shift budget for every model and micro-batch: the MFU runs share one data preparation.
    budgets = {tuple(a for a in g.mfu_args(g.GPU, m, s, mb, c, tmp_path) if a.startswith("shift."))
               for m, s, mbs in g.GPU.models for mb in mbs for c in (False, True)}
    assert len(budgets) == 1
    assert "batch.tokens=65536" in g.mfu_args(g.GPU, "pythia-410m", 2048, 32, True, tmp_path)
    assert sum(g.GPU.timeouts.values()) == g.GPU.budget_s
    g.dry_run(g.GPU, tmp_path)
    out = capsys.readouterr().out
    assert f"$ {sys.executable} -m pytest -m gpu -q tests/test_gpu.py" in out
    assert out.count("--as-run") == 2 + 4 + 3 and "trainer.compile=true" in out
    assert f"CPT_FAULT=step:{g.TINY_STEPS + g.KILL_AT} " in out and "trainer=fsdp trainer.devices=1" in out


class FakeCtx:
    """check_mfu's side of a Ctx: runs answer from `oom` (model, micro-batch) pairs, no process starts."""

    def __init__(self, tmp_path, oom, timeout_after=None):
        self.p, self.work, self.peaks, self.ran = g.GPU, tmp_path, [], []
        self.oom, self.timeout_after = oom, timeout_after  # after that many runs that fit

    def dir(self, name, seed=None):
        return self.work / name

    def run(self, label, argv, env=None, check=True):
        arg = lambda key: next(a.split("=")[1] for a in argv if a.startswith(key + "="))
        model, mb = arg("model"), int(arg("batch.micro_sequences"))
        if len([r for r in self.ran if r[2] == 0]) == self.timeout_after:
            raise g.subprocess.TimeoutExpired(argv, 1)
        rc = 1 if (model, mb) in self.oom else 0
        self.ran.append((label, mb, rc))
        self.peaks += [mb * 2**30] if rc == 0 else []
        err = "torch.OutOfMemoryError: CUDA out of memory" if rc else ""
        return g.subprocess.CompletedProcess(argv, rc, "", err), 1.0


@pytest.fixture
def fake_store(monkeypatch):
    monkeypatch.setattr(g, "store", lambda d: {"perf/tokens_per_s": {1: 9e9, 2: 100.0, 3: 100.0},
                                               "perf/mfu": {1: 0.9, 2: 0.4, 3: 0.4}})


def test_mfu_falls_back_on_oom_and_compiles_from_the_eager_fit(tmp_path, fake_store):
    ctx = FakeCtx(tmp_path, oom={("pythia-160m", 64), ("pythia-410m", 32)})
    ok, summary, f = g.check_mfu(ctx)
    assert [(label, rc) for label, _, rc in ctx.ran] == [
        ("mfu-pythia-160m-64", 1), ("mfu-pythia-160m-32", 0), ("mfu-pythia-410m-32", 1), ("mfu-pythia-410m-16", 0),
        ("mfu-pythia-160m-32-compile", 0), ("mfu-pythia-410m-16-compile", 0)]  # compiled: no retry of 64 / 32
    assert ok and [m["micro_batch"] for m in f["runs"]] == [32, 16, 32, 16]
    assert f["runs"][0]["mfu"] == 0.4 and f["runs"][1]["peak_allocated_gib"] == 16  # the run that fit
    assert summary.startswith("pythia-160m eager micro-batch 32 (the largest that fits of 64/32/16): "
                              "100 tokens/s, MFU 0.400")


def test_mfu_keeps_what_it_measured_before_a_timeout(tmp_path, fake_store):
    ok, summary, f = g.check_mfu(FakeCtx(tmp_path, oom=set(), timeout_after=2))
    assert not ok and len(f["runs"]) == 2 and summary.endswith("; 2 not measured (timeout)")
    with pytest.raises(g.subprocess.TimeoutExpired):  # nothing measured: the check's TIMEOUT
        g.check_mfu(FakeCtx(tmp_path, oom=set(), timeout_after=0))
