"""Shards and parts that were changed on disk: caught by the stamp on open, by every byte under
`cpt prepare --verify`, or (a part) redone; the epochs of shift.allow_epochs in the plan.

Tiny shift=files data is prepared once for the module and copied (mtimes kept, as `cp -p` does)
into each test's output directory; one shard over 2 MiB is written from a part made here, since
the stamp hashes the first and last MiB and a byte between them is what only --verify sees.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cpt.cli.main import main
from cpt.data import integrity
from cpt.data.parts import Part
from cpt.data.prepare import check_budgets, prepare, shard_path
from cpt.data.shards import open_shard, write_shard
from cpt.data.verify import verify_shard
from cpt.errors import UserError

from conftest import ROOT, TINY

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _jsonl(path: Path, n: int, tag: str) -> None:
    rng = np.random.default_rng(len(tag))
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(WORDS, 40)) + f" {tag} {i}"}) + "\n"
                            for i in range(n)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "en").mkdir()
    _jsonl(root / "en" / "a.jsonl", 150, "a")  # two files: two units, so a build can stop between parts
    _jsonl(root / "en" / "b.jsonl", 150, "b")
    _jsonl(root / "de.jsonl", 300, "de")
    return root


def _overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return TINY[:2] + ["shift=files", f"shift.upstream={corpus}/en", f"shift.downstream={corpus}/de.jsonl",
                       "shift.tokens=6000", "shift.val_tokens=600", "model.seq_len=32",
                       f"paths.output_dir={out}", f"tracking.uri=sqlite:///{out}/mlflow.db", *extra]


def _cfg(corpus: Path, out: Path, *extra: str):
    from cpt.cli.compose import compose_run_config

    return compose_run_config(_overrides(corpus, out, *extra))


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("built")
    prepare(_cfg(corpus, root), workers=1)
    return root


@pytest.fixture
def out(built, tmp_path) -> Path:
    dst = tmp_path / "outputs"
    for sub in ("data", "tokenizers"):
        shutil.copytree(built / sub, dst / sub)  # copy2: mtime_ns kept, so the stamps still hold
    return dst


def _shard_dir(corpus, out, i=0) -> Path:
    cfg = _cfg(corpus, out)
    return shard_path(cfg, i, prepare(cfg).tokenizer_fp)


def _flip(f: Path, offset: int, keep_mtime: bool) -> None:
    """Change one byte of `f` in place (same size); keep_mtime: as silent disk corruption does."""
    st = f.stat()
    with open(f, "r+b") as h:
        h.seek(offset)
        b = h.read(1)[0]
        h.seek(offset)
        h.write(bytes([b ^ 0x5A]))
    if keep_mtime:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_mtime", [True, False], ids=["mtime-kept", "mtime-moved"])
def test_a_changed_byte_in_the_first_mib_is_one_line_on_open(corpus, out, keep_mtime):
    path = _shard_dir(corpus, out)
    _flip(path / "train.bin", 100, keep_mtime)
    with pytest.raises(UserError) as e:
        prepare(_cfg(corpus, out))
    msg = str(e.value)
    assert msg.startswith(f"{path / 'train.bin'}: its first MiB differs from the checksum in its manifest")
    assert f"delete {path} to rebuild it" in msg and "cpt prepare --verify" in msg and "\n" not in msg


@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_a_truncated_or_extended_array_is_one_line_on_open(corpus, out, change):
    path = _shard_dir(corpus, out, 1)
    f = path / "val.bin"
    data = f.read_bytes()
    f.write_bytes(data[:-2] if change == "truncated" else data + b"\0\0")
    with pytest.raises(UserError, match=f"{f}: size does not match its manifest .* delete {path} to rebuild"):
        prepare(_cfg(corpus, out))


@pytest.fixture
def big(tmp_path) -> Path:
    """A 2.8 MB shard (uint16) written from one part made here: bytes beyond the stamped MiBs."""
    rng = np.random.default_rng(0)
    stem = tmp_path / "part"
    tokens = rng.integers(0, 1024, 1_500_000, dtype=np.uint16)
    tokens.tofile(f"{stem}.bin")
    np.save(f"{stem}.len.npy", np.full(1500, 1000, dtype=np.uint32))
    path = tmp_path / "big"
    write_shard(path, "big", {}, [Part(stem, len(tokens), 1500, True, len(tokens))], "uint16",
                1_400_000, 2000, "fp")
    assert (path / "train.bin").stat().st_size > 2 * integrity.STAMP_BYTES + 100_000
    return path


def test_a_byte_between_the_stamped_mibs_passes_the_stamp_and_fails_verify(big):
    f = big / "train.bin"
    _flip(f, 1_400_000, keep_mtime=True)  # beyond the first MiB, before the last
    assert open_shard(big, "fp") is not None  # the stamp's limit: it reads 2 MiB, not 2.8 MB
    status, text = verify_shard(big, "fp")
    assert status == "corrupt"
    assert text == f"{f}: its bytes differ from the checksum in its manifest; the shard is corrupt: delete {big} to rebuild it"


def test_a_token_id_beyond_the_vocabulary_is_one_line_when_its_window_is_read(big):
    """Past the stamp (a byte between the stamped MiBs, mtime kept): the window that holds it
    stops the run in one line naming the file, never an IndexError in the embedding."""
    from cpt.data.windows import TokenWindows

    f = big / "train.bin"
    st = f.stat()
    tokens = np.memmap(f, dtype="uint16", mode="r+")
    tokens[1_400_000 // 2] = 60_000  # a uint16 id no tokenizer of this shard made
    tokens.flush()
    del tokens
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # as silent disk corruption: the stamp passes
    windows = TokenWindows(open_shard(big, "fp").array("train"), 128, vocab=50_304, source=str(f))
    assert windows[0].max() < 50_304
    with pytest.raises(UserError, match=r"train.bin: token id 60000 at tokens 699904-700032 is beyond the "
                                        r"vocabulary \(50304\); the shard is corrupt"):
        windows[700_000 // 128]


def test_a_same_size_write_between_the_stamped_mibs_is_caught_on_open(big, capsys):
    """The issue's case: bytes changed on disk at the same size. A write moves the mtime, so the
    open reads every byte once (saying so) and stops with one line; it never trains on them."""
    f = big / "train.bin"
    _flip(f, 1_400_000, keep_mtime=False)
    with pytest.raises(UserError, match=f"{f}: its bytes differ from the checksum in its manifest"):
        open_shard(big, "fp")
    assert capsys.readouterr().err == f"{f}: modified since its shard was built (mtime); checking all " \
                                      f"{f.stat().st_size:,} bytes once\n"


def test_a_copy_without_p_is_checked_once_then_restamped(big, capsys):
    f = big / "train.bin"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # the same bytes, a new mtime
    assert open_shard(big, "fp") is not None
    assert "checking all" in capsys.readouterr().err
    stamped = json.loads((big / "manifest.json").read_text())["files"]["train.bin"]["mtime_ns"]
    assert stamped == f.stat().st_mtime_ns
    assert open_shard(big, "fp") is not None
    assert capsys.readouterr().err == ""  # the next open is the cheap one again


def test_a_part_with_bad_bytes_is_redone_with_one_line(corpus, built, tmp_path, capsys):
    out = tmp_path / "outputs"
    shutil.copytree(built / "tokenizers", out / "tokenizers")
    cfg = _cfg(corpus, out)

    class Interrupt(Exception):
        pass

    def stop(name, i):
        raise Interrupt

    with pytest.raises(Interrupt):
        prepare(cfg, workers=1, on_part=stop)
    path = shard_path(cfg, 0, prepare(_cfg(corpus, built)).tokenizer_fp)  # the same (copied) tokenizer
    part = path.parent / f".parts-{path.name}" / "000000.bin"
    _flip(part, 10, keep_mtime=True)
    capsys.readouterr()
    redone = []
    data = prepare(cfg, workers=1, on_part=lambda name, i: redone.append((name, i)))
    assert capsys.readouterr().err == (f"{part}: its bytes do not match the checksum in 000000.json; "
                                       "tokenizing that unit again\n")
    assert ("upstream", 0) in redone
    clean = prepare(_cfg(corpus, built)).shards["upstream"]
    for split in ("train", "val"):
        assert np.array_equal(np.asarray(data.shards["upstream"].array(split)), np.asarray(clean.array(split)))


def _cli(argv: list[str], monkeypatch, capsys) -> tuple[int, list[str], str]:
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out.splitlines(), got.err


def test_prepare_verify_ok_then_corrupt(corpus, out, monkeypatch, capsys):
    code, lines, err = _cli(["prepare", "--verify", *_overrides(corpus, out)], monkeypatch, capsys)
    up, down = _shard_dir(corpus, out, 0), _shard_dir(corpus, out, 1)
    assert (code, lines) == (0, [f"  upstream         ok        {up}", f"  downstream       ok        {down}"])
    _flip(down / "val.bin", 7, keep_mtime=True)
    code, lines, err = _cli(["prepare", "--verify", *_overrides(corpus, out)], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + "".join(lines)
    assert lines == [f"  upstream         ok        {up}",
                     f"  downstream       corrupt   {down / 'val.bin'}: its first MiB differs from the checksum "
                     f"in its manifest; the shard is corrupt: delete {down} to rebuild it"]


def test_prepare_verify_names_unbuilt_and_unstamped_shards(corpus, out, monkeypatch, capsys):
    up = _shard_dir(corpus, out, 0)
    m = json.loads((up / "manifest.json").read_text())
    del m["files"]  # a shard built before stamps: still opens, as before
    (up / "manifest.json").write_text(json.dumps(m))
    assert open_shard(up, m["tokenizer"]) is not None
    code, lines, err = _cli(["prepare", "--verify", *_overrides(corpus, out, "shift.datasets.1.tokens=7000")],
                            monkeypatch, capsys)
    assert code == 2 and err == ""
    assert lines[0] == (f"  upstream         unchecked {up}: no checksums (built before cpt recorded them); "
                        "delete it to rebuild it with them")
    assert lines[1].startswith("  downstream       missing   ") and "not built; `cpt prepare <overrides>` builds it" in lines[1]


def test_allow_epochs_is_in_the_plan_and_the_params(corpus, out, monkeypatch, capsys):
    many = ["shift.datasets.0.tokens=40000"]  # beyond the ~12k training tokens of upstream's files
    code, lines, _ = _cli(["plan", *_overrides(corpus, out, *many, "shift.allow_epochs=true")], monkeypatch, capsys)
    assert code == 0 and "data (shift.allow_epochs): upstream ? (its shard is not built yet)" in "\n".join(lines)
    cfg = _cfg(corpus, out, *many, "shift.allow_epochs=true")
    data = prepare(cfg)
    reads = check_budgets(cfg, data)  # what the run logs as the MLflow params data.<name>.epochs
    assert set(reads) == {"upstream"} and reads["upstream"] == 40000 / data.shards["upstream"].train_tokens > 2
    code, lines, _ = _cli(["plan", *_overrides(corpus, out, *many, "shift.allow_epochs=true")], monkeypatch, capsys)
    assert f"data (shift.allow_epochs): upstream {reads['upstream']:.3g} epochs, downstream at most 1 epoch" in lines
    with pytest.raises(UserError, match="shift.datasets.0.tokens=40000: dataset upstream has only .* shift.allow_epochs=true"):
        check_budgets(_cfg(corpus, out, *many), data)
