"""`cpt evaluate <run id | export dir> harness=...`: task scores of an existing model, no training."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("evaluate", help="score a finished run's final model or an export directory with lm-eval")
    p.add_argument("target", help="an MLflow run id (its final weights from the prefix cache) or an export directory")
    p.add_argument("overrides", nargs="*", help="harness=synthetic|paper-en|paper-de or harness.tasks=[...], "
                   "and e.g. harness.limit=200; a run's own overrides are applied first")
    return p


def main(args) -> int:
    from cpt.harness.existing import evaluate_existing

    evaluate_existing(args.target, list(args.overrides))
    return 0
