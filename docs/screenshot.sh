#!/usr/bin/env bash
# The README's picture of the MLflow UI (docs/mlflow-runs.png): the default run and a 4-point
# sweep logged to a fresh store, its runs page taken by headless Chromium. Not part of the tests.
#   apt-get update && apt-get install -y chromium     # Debian's package
#   docs/screenshot.sh [overrides for both runs, e.g. shift.datasets.1.tokens=409600]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cpt-screenshot/outputs}
PORT=${PORT:-5077}
PNG=${PNG:-docs/mlflow-runs.png}
rm -rf "$OUT"
python run.py "paths.output_dir=$OUT" "$@"
python run.py -m lr.max=1.5e-4,6e-4 warmup=0,0.02 "paths.output_dir=$OUT" "$@"

mlflow ui --backend-store-uri "sqlite:///$OUT/mlflow.db" --host 127.0.0.1 --port "$PORT" --workers 1 \
  > "$OUT/mlflow-ui.log" 2>&1 &
UI=$!
trap 'kill $UI 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 1; done
EXP=$(python -c "from mlflow.tracking import MlflowClient as C; print(C('sqlite:///$OUT/mlflow.db').get_experiment_by_name('cpt').experiment_id)")
# MLflow 3.17's sidebar keeps a workflow (GenAI / Model training) per browser, GenAI in a fresh
# profile like this one; the URL names the one the experiment's kind stands for.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,760 \
  --virtual-time-budget=30000 --screenshot="$PNG" \
  "http://127.0.0.1:$PORT/#/experiments/$EXP/runs?workflowType=machine_learning"
echo "$PNG"
