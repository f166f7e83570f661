"""`cpt cache list` / `cpt cache rm` on a real prefix cache and checkpoint directory."""

from __future__ import annotations

import torch

from cpt.store.prefix_cache import PrefixCache
from cpt.store.stage_checkpoints import StageCheckpoints
from cpt.cli.main import main


def _populate(root):
    cache = PrefixCache(root / "cache")
    cache.put("aaaa1111bbbb2222cccc", {"w": torch.zeros(256, 256)}, {"val": {}, "run_id": "r0", "stage": 0})
    cache.put("dddd3333eeee4444ffff", {"w": torch.zeros(16)}, {"val": {}, "run_id": "r1", "stage": 1})
    cache.get("aaaa1111bbbb2222cccc")  # last use
    store = StageCheckpoints(root / "checkpoints" / "run-9999888877776666")
    store.save(6, {"model": {"w": torch.zeros(64, 64)}}, {"stage": 1}, keep_last=2)
    store.save(12, {"model": {"w": torch.zeros(64, 64)}}, {"stage": 1}, keep_last=2)
    return cache


def test_list_shows_entries_sizes_last_use_and_checkpoints(tmp_path, capsys):
    _populate(tmp_path)
    assert main(["cache", "list", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "1 unfinished stages" in out
    rows = [line.split() for line in out.splitlines()]
    first = next(r for r in rows if r[0] == "aaaa1111bbbb2222cccc")
    size = sum(f.stat().st_size for f in (tmp_path / "cache" / first[0]).rglob("*") if f.is_file())
    assert size > 256 * 256 * 4  # the weights, result.json, last_used
    assert first[1] == "0" and first[2:4] == [f"{size / 1024:.1f}", "KB"] and first[-1] == "r0"
    assert out.index("aaaa1111") < out.index("dddd3333")  # most recently used first
    ckpt = next(r for r in rows if r[0] == "run-9999888877776666")
    assert ckpt[1:3] == ["steps", "6,"] and ckpt[3] == "12"


def test_rm_by_unique_prefix_refuses_ambiguous_and_locked(tmp_path, capsys):
    cache = _populate(tmp_path)
    assert main(["cache", "rm", "aaaa", "--output-dir", str(tmp_path)]) == 0
    assert [e.key for e in cache.entries()] == ["dddd3333eeee4444ffff"]
    assert main(["cache", "rm", "zzzz", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches nothing; allowed:" in err[0]
    with cache.lock("dddd3333eeee4444ffff"):  # a running job holds it
        assert main(["cache", "rm", "dddd", "--output-dir", str(tmp_path)]) == 2
    assert "a running job holds it" in capsys.readouterr().err
    assert main(["cache", "rm", "--all", "--output-dir", str(tmp_path)]) == 0
    assert cache.entries() == [] and not list((tmp_path / "checkpoints").iterdir())
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name != "locks"]  # no trash left
