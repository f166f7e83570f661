"""Embedded data: deterministic generation, no unknown tokens, shards built once and reused."""

import itertools

import numpy as np
import pytest

from cpt.data import synthetic
from cpt.data.prepare import prepare, shard_path
from cpt.data.shards import VAL_EVERY
from cpt.data.sources import documents
from cpt.errors import UserError

from conftest import CONF, TINY, parse

EMBEDDED = sorted(p.stem for p in (CONF / "shift").glob("synthetic*.yaml"))


def test_generation_is_deterministic_and_extends_as_a_prefix():
    spec = synthetic.SyntheticSpec("en", (1, 1, 1, 1, 0, 0), 0)
    a = list(itertools.islice(synthetic.documents(spec), 300))
    b = list(itertools.islice(synthetic.documents(spec), 600))
    assert a == b[:300]
    other_split = list(itertools.islice(synthetic.documents(synthetic.SyntheticSpec("en", (1, 1, 1, 1, 0, 0), 1)), 300))
    assert not set(a) & set(other_split)


def test_languages_differ_in_lexicon():
    en = set(" ".join(itertools.islice(synthetic.documents(synthetic.SyntheticSpec("en", (1,) * 6, 0)), 50)).split())
    de = set(" ".join(itertools.islice(synthetic.documents(synthetic.SyntheticSpec("de", (1,) * 6, 0)), 50)).split())
    assert len(en & de) < 0.05 * len(en)
    assert any(c in "".join(de) for c in "äöüß")


@pytest.mark.parametrize("shift", EMBEDDED)
def test_no_unknown_tokens_on_embedded_data(shift, prepared_root):
    cfg = parse(TINY + [f"shift={shift}"], prepared_root)
    data = prepare(cfg)  # already built by the session fixture: a cache hit
    tok = data.tokenizer
    assert tok.model.unk_token is None or tok.token_to_id(tok.model.unk_token) is None
    for i, d in enumerate(cfg.shift.datasets):
        docs = list(itertools.islice(documents(d.source, "x"), 40))
        for doc in docs:
            enc = tok.encode(doc)
            assert None not in enc.ids
            assert tok.decode(enc.ids) == doc  # byte-level: lossless, nothing mapped to <unk>


def test_shards_are_built_once_and_reused(out):
    cfg = parse(TINY, out)
    first = prepare(cfg)
    paths = {n: s.path / "train.bin" for n, s in first.shards.items()}
    mtimes = {n: p.stat().st_mtime_ns for n, p in paths.items()}
    second = prepare(cfg)
    assert {n: p.stat().st_mtime_ns for n, p in paths.items()} == mtimes
    assert second.tokenizer_fp == first.tokenizer_fp


def test_validation_is_held_out_by_document(out):
    cfg = parse(TINY, out)
    data = prepare(cfg)
    tok = data.tokenizer
    eos = tok.token_to_id("<|endoftext|>")
    d0 = cfg.shift.datasets[0]
    val = np.asarray(data.shards[d0.name].array("val"))
    train = np.asarray(data.shards[d0.name].array("train"))
    val_docs = {tok.decode(list(x)) for x in np.split(val, np.flatnonzero(val == eos))[:-1][1:] if len(x) > 2}
    train_docs = {tok.decode(list(x)) for x in np.split(train, np.flatnonzero(train == eos))[1:-1] if len(x) > 2}
    assert val_docs and train_docs
    assert not {d.strip("<|endoftext|>") for d in val_docs} & {d.strip("<|endoftext|>") for d in train_docs}
    assert len(val) == d0.val_tokens + 1 and len(train) == d0.tokens + 1
    assert VAL_EVERY > 1


def test_corrupt_shard_is_an_error_not_reused(out):
    cfg = parse(TINY, out)
    data = prepare(cfg)
    path = shard_path(cfg, 0, data.tokenizer_fp)
    with open(path / "train.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(UserError, match="does not match its manifest"):
        prepare(cfg)
