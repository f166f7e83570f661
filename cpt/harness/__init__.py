"""Task scores beside the losses: lm-evaluation-harness at stage ends (cpt/harness/evaluator.py),
embedded multiple-choice tasks made from the synthetic languages (cpt/harness/tasks.py), the
`harness.tasks` entries and their datasets (cpt/harness/spec.py), the MLflow names and averages
(cpt/harness/metrics.py), and the run's glue (cpt/harness/stages.py)."""
