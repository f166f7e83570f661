"""Preparation speed: `cpt prepare`'s tokens/s against the tokenizers library's own batch encoding.

Both tokenize the same files with the same tokenizer, in this one run:
- baseline: every document already in memory, one `Tokenizer.encode_batch` call (Rust threads
  on every core) — the encoder alone, nothing read, parsed or written;
- cpt: `build_shard` from the files on disk — reading, decompressing, JSON parsing, encoding in
  worker processes, writing parts, merging them into the train/val shard.
Prints tokens/s of each and the ratio (target >= 0.8), the median of --repeats interleaved pairs.

    python bench/prepare_speed.py                       # generated .jsonl.zst corpus, BPE 8192
    python bench/prepare_speed.py --files 'data/pile/*.jsonl.zst' --tokenizer tokenizer.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_corpus(root: Path, n_files: int, docs_per_file: int) -> list[Path]:
    import zstandard

    from cpt.data.synthetic import SyntheticSpec, documents

    stream = documents(SyntheticSpec("en", (1, 1, 1, 1, 1, 1), 0))
    paths = []
    for i in range(n_files):
        docs = itertools.islice(stream, docs_per_file)
        body = "".join(json.dumps({"text": d, "meta": {"i": i}}) + "\n" for d in docs).encode()
        p = root / f"{i:02d}.jsonl.zst"
        p.write_bytes(zstandard.ZstdCompressor(level=3).compress(body))
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", help="glob of corpus files (default: a generated .jsonl.zst corpus)")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: a byte-level BPE trained here)")
    ap.add_argument("--n-files", type=int, default=4)
    ap.add_argument("--docs-per-file", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    from cpt.data.build import build_shard
    from cpt.data.readers.file_list import expand_files
    from cpt.data.sources import units
    from cpt.data.tokenizer import eos_id, fingerprint, train_bpe

    work = Path(tempfile.mkdtemp(prefix="cpt-bench-"))
    try:
        files = (expand_files(args.files, "--files") if args.files
                 else make_corpus(work, args.n_files, args.docs_per_file))
        source = {"type": "files", "paths": [str(f) for f in files], "text_field": "text"}
        us = units(source, "bench")
        docs = [d for u in us for d in u.documents()]
        tok = (Tokenizer.from_file(args.tokenizer) if args.tokenizer
               else train_bpe(itertools.islice(docs, 4000), 8192))
        eos, fp = eos_id(tok), fingerprint(tok)
        size = sum(f.stat().st_size for f in map(Path, files))
        print(f"{len(files)} files, {size / 1e6:.1f} MB on disk, {len(docs):,} documents, "
              f"vocab {tok.get_vocab_size():,}, {os.cpu_count()} CPUs", flush=True)

        base, ours = [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            n_base = sum(len(e.ids) + 1 for e in tok.encode_batch(docs))
            base.append(n_base / (time.perf_counter() - t))

            out = work / f"shard-{r}"
            t = time.perf_counter()
            shard = build_shard(out, "bench", source, us, tok, eos, 10**12, 1000, fp,
                                workers=args.workers, progress=False)
            elapsed = time.perf_counter() - t
            n_ours = shard.train_tokens + shard.val_tokens
            ours.append(n_ours / elapsed)
            # Every token of every document, but the rest of the one cut at the validation budget.
            assert 0 <= n_base - n_ours < 2000, (n_ours, n_base)
            shutil.rmtree(out)
            print(f"  pair {r + 1}: encode_batch {base[-1] / 1e6:.2f}M tok/s   cpt prepare {ours[-1] / 1e6:.2f}M tok/s")
        ratios = [o / b for o, b in zip(ours, base)]
        print(f"tokens: {n_base:,}")
        print(f"encode_batch (in memory): {statistics.median(base) / 1e6:.2f}M tok/s")
        print(f"cpt prepare (from disk):  {statistics.median(ours) / 1e6:.2f}M tok/s")
        print(f"ratio cpt / encode_batch: {statistics.median(ratios):.2f}  (target >= 0.8)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
