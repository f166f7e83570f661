"""Stage 0 from a pretrained checkpoint (`model.init`): load, evaluate every dataset, cache.

The loaded model is the chain's stage-0 prefix like a trained one: its evaluation is the
reference of `forgetting`, it is logged as an MLflow run tagged cpt.kind=prefix (with cpt.init),
and later runs of the same chain find it in the prefix cache.
"""

from __future__ import annotations


def eval_device(cfg) -> str:
    import torch

    return "cuda" if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"


def load_prefix(cfg, stage, key, model, data, tracker, tags, params, say):
    from cpt import faults
    from cpt.cache import PrefixCache
    from cpt.checkpoints import load_init_weights
    from cpt.experiment import unigram_entropy
    from cpt.lit_module import evaluate
    from cpt.train import val_loaders

    name = cfg.shift.datasets[stage.dataset].name
    say(f"stage {stage.index} ({name}): loading pretrained model.init={stage.init} (prefix {key[:12]})")
    model.load_state_dict(load_init_weights(cfg.model))
    # We hold this prefix's lock: a RUNNING run of it is what a killed process left behind.
    tracker.end_stale(f"tags.`cpt.kind` = 'prefix' and tags.`cpt.prefix_key` = '{key}'")
    log = tracker.start_run(f"prefix-{stage.index}-{key[:8]}", params,
                            {**tags, "cpt.kind": "prefix", "cpt.stage": stage.index, "cpt.prefix_key": key,
                             "cpt.init": stage.init})
    try:
        faults.reached("init")
        device = eval_device(cfg)
        val = evaluate(model.to(device), val_loaders(cfg, data), device)
        model.to("cpu")
        log.log_metrics({f"val/{n}/loss": v for n, v in val.items()}, 0)
        result = {"val": val, "val_at_start": val, "end_tokens": 0, "tokens": 0, "run_id": log.run_id,
                  "stage": stage.index, "init": stage.init,
                  "unigram_entropy": unigram_entropy(data.shards[name].array("train"))}
        log.log_metrics({"data/unigram_entropy": result["unigram_entropy"]}, 0)
        entry = PrefixCache(cfg.paths.root / "cache").put(key, model.state_dict(), result)
        log.end("FINISHED")
    except BaseException:
        log.end("FAILED")
        raise
    return entry
