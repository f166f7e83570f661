"""`cpt prepare <overrides>`: tokenize and shard a shift ahead of training.

`python run.py` prepares on demand; this does it alone, e.g. on a CPU node before a GPU job, with
a progress bar (tokens/s) per dataset. An interrupted preparation resumes: finished parts are
reused (cpt/data/build.py). The same overrides then train on the prepared shards.
"""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("prepare", help="tokenize and shard the datasets of a run ahead of training")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py (e.g. shift=files shift.upstream=...)")
    p.add_argument("--workers", type=int, default=None,
                   help="tokenizer processes (default: one per CPU core, at most one per file)")
    return p


def main(args) -> int:
    import time

    from cpt.cli.compose import compose_run_config
    from cpt.data.prepare import prepare

    cfg = compose_run_config(args.overrides)
    start = time.perf_counter()
    data = prepare(cfg, progress=True, workers=args.workers)
    took = time.perf_counter() - start
    print(f"tokenizer {cfg.tokenizer}: {data.vocab_size:,} tokens (fingerprint {data.tokenizer_fp})")
    for d in cfg.shift.datasets:
        s = data.shards[d.name]
        short = "" if s.train_tokens > d.tokens else f"  (the source holds less than tokens={d.tokens:,})"
        print(f"  {d.name:<16} {s.train_tokens - 1:>14,} training + {s.val_tokens - 1:,} validation tokens  "
              f"{s.path}{short}")
    print(f"ready in {took:.1f} s")
    return 0
