"""Real data: shift=files in every format, the hub path on local files, parallel and resumable
preparation, the document-level split as a table of numbers, and the shipped hub shifts."""

from __future__ import annotations

import gzip
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from cpt.data import synthetic
from cpt.data.prepare import prepare, shard_path
from cpt.data.shards import VAL_EVERY, route
from cpt.errors import UserError

from conftest import CONF, TINY, parse

SMALL = TINY[:2] + ["eval.interval_steps=8", "shift.tokens=200000", "shift.val_tokens=20000"]


def _docs(language: str, n: int, split: int = 0) -> list[str]:
    spec = synthetic.SyntheticSpec(language, (1, 1, 1, 1, 1, 1), split)
    out = list(itertools.islice(synthetic.documents(spec), n))
    out[3] = out[3] + " — ünïcödé, emoji 🚀, quotes \" and \\ backslash"
    return out


def _jsonl(docs, field="text") -> str:
    return "".join(json.dumps({field: d, "meta": {"i": i}}, ensure_ascii=False) + "\n" for i, d in enumerate(docs))


def _write_every_format(root: Path, docs: list[str]) -> list[str]:
    """One file per format (plain and compressed); returns the documents in reading order."""
    root.mkdir(parents=True, exist_ok=True)
    bodies = {
        "a.jsonl": lambda d: _jsonl(d).encode(),
        "b.json": lambda d: json.dumps([{"text": x} for x in d], ensure_ascii=False, indent=1).encode(),
        "c.json": lambda d: _jsonl(d).encode(),
        "d.txt": lambda d: "\n\n".join(d).encode(),
        "f.jsonl.gz": lambda d: gzip.compress(_jsonl(d).encode()),
        "g.json.gz": lambda d: gzip.compress(_jsonl(d).encode()),
        "h.txt.gz": lambda d: gzip.compress("\n\n".join(d).encode()),
        "i.jsonl.zst": lambda d: zstandard.ZstdCompressor().compress(_jsonl(d).encode()),
        "j.json.zst": lambda d: zstandard.ZstdCompressor().compress(_jsonl(d).encode()),
        "k.txt.zst": lambda d: zstandard.ZstdCompressor().compress("\n\n".join(d).encode()),
    }
    names = sorted([*bodies, "e.parquet"])
    per = len(docs) // len(names)
    chunks = {n: docs[i * per:(i + 1) * per] for i, n in enumerate(names)}
    for name, make in bodies.items():
        (root / name).write_bytes(make(chunks[name]))
    pq.write_table(pa.table({"id": list(range(per)), "text": chunks["e.parquet"]}), root / "e.parquet",
                   row_group_size=7)
    return [d for n in names for d in chunks[n]]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpora")
    up = _write_every_format(root / "en", _docs("en", 440))
    down = _docs("de", 300)
    (root / "de").mkdir()
    (root / "de" / "de.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(down).encode()))
    return {"root": root, "up": up, "down": down}


def _files(corpora, out: Path, *extra: str):
    return parse(SMALL + ["shift=files", f"shift.upstream={corpora['root']}/en",
                          f"shift.downstream={corpora['root']}/de/*.jsonl.zst", *extra], out)


def _decode_docs(tok, tokens: np.ndarray, eos: int) -> list[str]:
    cuts = np.flatnonzero(tokens == eos)
    return [tok.decode(tokens[a + 1 if i else 0: b].tolist()) for i, (a, b) in enumerate(zip([0, *cuts], cuts))]


def test_every_format_reaches_the_shard_in_order_with_a_document_split(corpora, tmp_path):
    cfg = _files(corpora, tmp_path, "shift.tokens=1000000", "shift.val_tokens=100000")
    data = prepare(cfg, workers=1)
    tok, eos = data.tokenizer, data.tokenizer.token_to_id("<|endoftext|>")
    for name, docs in (("upstream", corpora["up"]), ("downstream", corpora["down"])):
        shard = data.shards[name]
        val = _decode_docs(tok, np.asarray(shard.array("val")), eos)
        train = _decode_docs(tok, np.asarray(shard.array("train")), eos)
        # Budgets exceed the corpus: every document is kept, every VAL_EVERY-th held out, in order.
        assert val == docs[::VAL_EVERY]
        assert train == [d for i, d in enumerate(docs) if i % VAL_EVERY]


def test_parallel_preparation_equals_sequential_and_resumes(corpora, tmp_path):
    seq = prepare(_files(corpora, tmp_path / "seq", "shift.tokens=30000", "shift.val_tokens=2000"), workers=1)

    cfg = _files(corpora, tmp_path / "par", "shift.tokens=30000", "shift.val_tokens=2000")
    shutil_copy_tokenizers(tmp_path / "seq", tmp_path / "par")

    class Interrupt(Exception):
        pass

    def crash_after_first(name, i):
        raise Interrupt(name, i)

    with pytest.raises(Interrupt):
        prepare(cfg, workers=1, on_part=crash_after_first)
    path = shard_path(cfg, 0, seq.tokenizer_fp)
    assert not path.exists()  # no shard that a later run could take for finished
    parts = path.parent / f".parts-{path.name}"
    done = sorted(parts.glob("*.json"))
    assert len(done) == 1

    resumed = []
    par = prepare(cfg, workers=2, on_part=lambda name, i: resumed.append((name, i)))
    assert ("upstream", 0) not in resumed and ("upstream", 1) in resumed  # the finished part was reused
    assert not parts.exists()  # parts are removed once the shard is written
    for name, s in seq.shards.items():
        p = par.shards[name]
        for split in ("train", "val"):
            assert np.array_equal(np.asarray(s.array(split)), np.asarray(p.array(split))), (name, split)


def shutil_copy_tokenizers(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src / "tokenizers", dst / "tokenizers")


def test_hub_loader_on_local_files_of_the_hubs_format_equals_files(corpora, tmp_path):
    """source.type=hf through `datasets` (the code that streams the Pile), on local .jsonl.zst."""
    pile = tmp_path / "pile"
    pile.mkdir()
    docs = corpora["up"]
    for i in range(2):  # the Pile ships train/00.jsonl.zst ... 29.jsonl.zst
        (pile / f"{i:02d}.jsonl.zst").write_bytes(
            zstandard.ZstdCompressor().compress(_jsonl(docs[i * 200:(i + 1) * 200]).encode()))
    files = parse(SMALL + ["shift=files", f"shift.upstream={pile}", f"shift.downstream={pile}/01.jsonl.zst"],
                  tmp_path / "a")
    hub = parse(SMALL + ["shift=files", f"shift.upstream={pile}", f"shift.downstream={pile}/01.jsonl.zst"],
                tmp_path / "b")
    hub.shift.datasets[0].source = {"type": "hf", "path": "json", "name": None, "split": "train",
                                    "text_field": "text", "data_files": [f"{pile}/*.jsonl.zst"]}
    a, b = prepare(files, workers=1), prepare(hub, workers=1)
    assert a.tokenizer_fp == b.tokenizer_fp
    x, y = a.shards["upstream"], b.shards["upstream"]
    assert x.train_tokens == y.train_tokens > 1000
    assert np.array_equal(np.asarray(x.array("train")), np.asarray(y.array("train")))
    assert np.array_equal(np.asarray(x.array("val")), np.asarray(y.array("val")))


def test_changed_files_are_new_data_never_a_stale_shard(corpora, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_text(_jsonl(corpora["down"][:150]))
    cfg = parse(SMALL + ["shift=files", f"shift.upstream={d}", f"shift.downstream={d}"], tmp_path / "o")
    first = prepare(cfg, workers=1)
    (d / "b.jsonl").write_text(_jsonl(corpora["down"][150:]))  # a new file in the same directory
    second = prepare(cfg, workers=1)
    assert second.shards["upstream"].path != first.shards["upstream"].path
    assert second.shards["upstream"].train_tokens > first.shards["upstream"].train_tokens


def test_a_unit_cut_short_is_read_further(tmp_path):
    """Validation documents (every 10th) much shorter than the rest: the first cap is not enough."""
    docs = [("v" if i % VAL_EVERY == 0 else "long document " * 40) + str(i) for i in range(2500)]
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_text(_jsonl(docs))
    cfg = parse(SMALL + ["shift=files", f"shift.upstream={d}", f"shift.downstream={d}",
                         "shift.tokens=1024", "shift.val_tokens=512"], tmp_path / "o")
    calls = []
    data = prepare(cfg, workers=1, on_part=lambda name, i: calls.append((name, i)))
    assert calls.count(("upstream", 0)) >= 2  # cut at the first cap, then read further
    s = data.shards["upstream"]
    assert s.train_tokens == 1025 and s.val_tokens == 513
    val = _decode_docs(data.tokenizer, np.asarray(s.array("val")), data.tokenizer.token_to_id("<|endoftext|>"))
    assert val[:5] == [docs[0], docs[10], docs[20], docs[30], docs[40]]


@pytest.mark.parametrize("lengths, first, have, want, expected, have_after", [
    # doc 0 -> val, docs 1..9 -> train; budgets in tokens (EOS included)
    ([3, 4, 5], 0, (0, 0), (10, 10), [("val", 0, 3), ("train", 3, 9)], (9, 3)),
    # a later part: its first document is number 10 of the source, so it is validation
    ([3, 4, 5], 10, (0, 0), (10, 10), [("val", 0, 3), ("train", 3, 9)], (9, 3)),
    ([3, 4, 5], 11, (0, 0), (10, 10), [("train", 0, 10)], (10, 0)),
    # the document crossing a budget is cut there; further training documents are dropped
    ([3, 4, 5, 6], 1, (0, 0), (8, 100), [("train", 0, 8)], (8, 0)),
    # validation full: everything else is training, one segment, up to its budget
    ([3, 4, 5, 6], 0, (0, 100), (10, 100), [("train", 0, 10)], (10, 100)),
    # validation cut mid-document, then the rest of the part is training
    ([6, 4, 5], 0, (0, 0), (100, 4), [("val", 0, 4), ("train", 6, 9)], (9, 4)),
    # training full but validation not: only validation turns are read on
    ([2] * 12, 0, (50, 0), (50, 100), [("val", 0, 2), ("val", 20, 2)], (50, 4)),
])
def test_route_table(lengths, first, have, want, expected, have_after):
    h = {"train": have[0], "val": have[1]}
    got = route(np.asarray(lengths), first, h, {"train": want[0], "val": want[1]})
    assert got == expected
    assert (h["train"], h["val"]) == have_after


# ----------------------------------------------------------------------------- config forms


def test_list_form_for_n_datasets_and_names_in_metric_keys(tmp_path):
    cfg = parse(TINY[:2] + ["shift=files", "shift.paths=[a/*.jsonl,[b,c/x.txt],d]", "shift.names=[pile,sp1,sp2]",
                            "shift.tokens=4096", "shift.val_tokens=512", "shift.text_field=content"])
    assert [d.name for d in cfg.shift.datasets] == ["pile", "sp1", "sp2"]
    assert cfg.shift.datasets[1].source == {"type": "files", "paths": ["b", "c/x.txt"], "text_field": "content"}
    assert all(d.tokens == 4096 and d.val_tokens == 512 for d in cfg.shift.datasets)
    default = parse(TINY[:2] + ["shift=files", "shift.paths=[a,b,c]"])
    assert [d.name for d in default.shift.datasets] == ["d0", "d1", "d2"]


@pytest.mark.parametrize("overrides, message", [
    (["shift=files"], "shift.upstream: required with shift=files"),
    (["shift=files", "shift.upstream=a"], "shift.downstream: required"),
    (["shift=files", "shift.paths=[a]"], "shift.paths=['a']: allowed a list of at least 2"),
    (["shift=files", "shift.paths=[a,b]", "shift.upstream=c"], "either shift.paths"),
    (["shift=files", "shift.paths=[a,b]", "shift.names=[x]"], "shift.names=['x']: allowed a list of 2"),
    (["shift.datasets.0.source.type=web"], "shift.datasets.0.source.type=web: allowed synthetic, files, hf"),
    (["shift=files", "shift.upstream=a", "shift.downstream=b", "+shift.datasets.0.source.glob=x"],
     "shift.datasets.0.source.glob: unknown key of a files source"),
])
def test_bad_shift_forms_are_one_line(overrides, message):
    with pytest.raises(UserError) as e:
        parse(overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


HUB_SHIFTS = {"pile-slimpajama": ["pile", "slimpajama"], "en-de": ["pile", "german"],
              "slimpajama-3split": ["sp1", "sp2", "sp3"]}


@pytest.mark.parametrize("shift", sorted(HUB_SHIFTS))
def test_hub_shifts_compose_with_budgets_as_keys(shift):
    cfg = parse([f"shift={shift}", "shift.tokens=3e11"])
    assert [d.name for d in cfg.shift.datasets] == HUB_SHIFTS[shift]
    assert cfg.tokenizer == "gpt-neox-20b" and cfg.model.name == "tiny"  # the model stays the user's
    assert all(d.tokens == 300_000_000_000 and d.source["type"] == "hf" for d in cfg.shift.datasets)
    text = (CONF / "shift" / f"{shift}.yaml").read_text()
    for d in cfg.shift.datasets:  # every dataset id is cited with its card
        assert f"https://huggingface.co/datasets/{d.source['path']}" in text or "see pile-slimpajama" in text
    if shift == "slimpajama-3split":  # disjoint by construction: no chunk is read twice
        chunks = [c for d in cfg.shift.datasets for c in d.source["data_files"]["train"]]
        assert len(chunks) == len(set(chunks)) == 6


def test_hub_unreachable_is_one_line_naming_shift_files(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as e:
        prepare(parse(["shift=pile-slimpajama"], tmp_path))
    msg = str(e.value)
    assert "monology/pile-uncopyrighted" in msg and "unreachable" in msg and "shift=files" in msg
    assert not (tmp_path / "data").exists() or not [p for p in (tmp_path / "data").iterdir()
                                                     if not p.name.startswith(".")]


def test_prepare_command_prints_the_shards(corpora, tmp_path, capsys):
    from cpt.cli.main import main

    rc = main(["prepare", "--workers", "1", *SMALL, "shift=files", f"shift.upstream={corpora['root']}/en",
               f"shift.downstream={corpora['root']}/de", f"paths.output_dir={tmp_path}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "upstream" in out.out and "downstream" in out.out and "validation tokens" in out.out
    assert "tok/s" in out.err  # the progress bar with tokens/s
    assert os.path.isdir(tmp_path / "data")
