#!/usr/bin/env bash
# Run an hdfsad Spark job through spark-submit, locally by default or on any cluster.
#
#   ./spark-submit.sh <job> [job options] [-- spark-submit options]
#
# Local by default (--master local[*]); any spark-submit option after `--` is passed through
# (--master spark://host:7077 | yarn | k8s://..., --conf, --num-executors, --deploy-mode ...).
# The hdfsad package is zipped and shipped to the executors with --py-files.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOBS=(ingest import-reference train compare score sql explain grid-search)

usage() {
  cat <<USAGE
usage: $(basename "$0") <job> [job options] [-- spark-submit options]

jobs:
  ingest             raw HDFS logs (hdfs://, file://, globs; .gz/.bz2) -> sequences, rejects, events tables
  import-reference   reference CSV (id,sequence[,class]) -> sequences table
  train              one LSTM variant on a labelled sequences table or reference CSV -> model, report
  compare            every variant under both split protocols + an MLlib decision tree -> docs/results.md
  score              a trained model over a date's blocks (raw logs are ingested first) -> scores, runs
                     tables in the Spark SQL catalog, daily HTML report
  sql                one Spark SQL query on the catalog (sequences, rejects, events, scores, runs)
  explain            a block's score, its events with template text and its raw lines
  grid-search        k-fold grid search, one Spark task per (config, fold) fit -> results table,
                     docs/grid.md, conf/variants/grid_best.yaml (train --num-processes N: DDP on executors)

Each job takes --help for its own options, --config FILE and --set key=value.
Spark options go after '--'; the default is --master local[*] (and --driver-memory 4g).
Environment: SPARK_SUBMIT (spark-submit to use), HDFSAD_PYTHON (Python for driver and executors).

examples:
  $(basename "$0") ingest 'hdfs:///logs/2008-11-09/*.log.gz' --date 2008-11-09
  $(basename "$0") ingest logs/ --labels anomaly_label.csv -- --master spark://10.0.0.1:7077 --executor-memory 4g
  $(basename "$0") score --model work/train/v2_grid/model --input 'hdfs:///logs/2008-11-09/' --date 2008-11-09
  $(basename "$0") sql "SELECT * FROM scores WHERE ingest_date = DATE'2008-11-09' ORDER BY score DESC LIMIT 20"
  $(basename "$0") train --variant v2_grid --table work/tables/sequences --protocol seed --out work/train/v2_grid
USAGE
}

if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then usage; exit 0; fi
job="$1"; shift
if [[ ! " ${JOBS[*]} " =~ " ${job} " ]]; then
  echo "spark-submit.sh: unknown job '${job}'; jobs: ${JOBS[*]}" >&2; exit 2
fi

job_args=(); spark_args=()
while [[ $# -gt 0 ]]; do
  if [[ "$1" == "--" ]]; then shift; spark_args=("$@"); break; fi
  job_args+=("$1"); shift
done

PY="${HDFSAD_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$HERE/.venv/bin/python" ]]; then PY="$HERE/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
SUBMIT="${SPARK_SUBMIT:-}"
if [[ -z "$SUBMIT" ]]; then
  if [[ -x "$(dirname "$PY")/spark-submit" ]]; then SUBMIT="$(dirname "$PY")/spark-submit"; else SUBMIT="spark-submit"; fi
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"

# Was option $1 given after `--` (as `$1 value`, `$1=value`, or a --conf property `$1=...`)?
has() { local o; for o in "${spark_args[@]+"${spark_args[@]}"}"; do [[ "$o" == "$1" || "$o" == "$1="* ]] && return 0; done; return 1; }
defaults=()
has --master || defaults+=(--master "local[*]")
has --driver-memory || defaults+=(--driver-memory "${HDFSAD_DRIVER_MEMORY:-4g}")
has --driver-java-options || defaults+=(--driver-java-options "-XX:-DontCompileHugeMethods -Dlog4j2.configurationFile=file:$HERE/conf/log4j2.properties")
has spark.executor.extraJavaOptions || defaults+=(--conf "spark.executor.extraJavaOptions=-XX:-DontCompileHugeMethods")

mkdir -p "$HERE/build"
zip="$HERE/build/hdfsad.zip"
"$PY" - "$HERE" "$zip" <<'PYZIP'
import os, sys, zipfile
root, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for base, dirs, files in os.walk(os.path.join(root, "hdfsad")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            if name.endswith((".py", ".yaml", ".csv")):
                path = os.path.join(base, name)
                z.write(os.path.realpath(path), os.path.relpath(path, root))
os.replace(tmp, dest)
PYZIP

script="$HERE/jobs/${job//-/_}.py"
exec "$SUBMIT" "${defaults[@]}" --name "hdfsad-${job}" --py-files "$zip" \
  "${spark_args[@]+"${spark_args[@]}"}" "$script" "${job_args[@]+"${job_args[@]}"}"
