"""`cpt prepare <overrides>`: tokenize and shard a shift ahead of training.

`python run.py` prepares on demand; this does it alone, e.g. on a CPU node before a GPU job, with
a progress bar (tokens/s) per dataset. An interrupted preparation resumes: finished parts are
reused (cpt/data/build.py). The same overrides then train on the prepared shards.

`--verify` builds nothing: it reads every byte of the config's shards against the checksums of
their manifests (cpt/data/verify.py), one line per dataset; status 2 unless every one is ok.
"""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("prepare", help="tokenize and shard the datasets of a run ahead of training")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py (e.g. shift=files shift.upstream=...)")
    p.add_argument("--workers", type=int, default=None,
                   help="tokenizer processes (default: one per CPU core, at most one per file)")
    p.add_argument("--verify", action="store_true",
                   help="check every byte of the shards against their checksums (builds nothing); exit 2 if any is not ok")
    return p


def main(args) -> int:
    import time

    from cpt.cli.compose import compose_run_config
    from cpt.data.prepare import prepare

    cfg = compose_run_config(args.overrides)
    if args.verify:
        return verify(cfg)
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


def verify(cfg) -> int:
    from cpt.data.verify import verify_shards

    verdicts = verify_shards(cfg)
    for v in verdicts:
        print(f"  {v.name:<16} {v.status:<9} {v.text}")
    return 0 if all(v.status == "ok" for v in verdicts) else 2
