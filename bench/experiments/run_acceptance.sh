#!/usr/bin/env bash
# The acceptance runs of `querylearn experiment` (docs/experiments.md, "Measured"): every experiment on
# MovieLens-100K and on a 5,000-user synthetic log, seeds 0,1,2, the settings of acceptance.toml,
# two runs at a time (one torch thread each). About 2 hours on a 2-core machine.
#
#   bash bench/experiments/run_acceptance.sh WORK_DIR [ML100K_DIR]
#   python bench/experiments/to_docs.py WORK_DIR     # results.json -> bench/results/experiments/, figures -> docs/img/experiments/
set -euo pipefail
work=${1:?usage: run_acceptance.sh WORK_DIR [ML100K_DIR]}
ml=${2:-$(dirname "$0")/../../../shared/data/movielens-100k}
cfg=$(cd "$(dirname "$0")" && pwd)/acceptance.toml
mkdir -p "$work/logs" "$work/out"
cd "$work"
[ -f ml100k/dataset.json ] || querylearn prepare movielens-100k --path "$ml" --out ml100k
[ -f syn5k/dataset.json ] || querylearn prepare synthetic --users 5000 --seed 0 --out syn5k
[ -f syn5k-noisy/dataset.json ] || querylearn prepare synthetic --users 5000 --seed 0 --noisy-task --out syn5k-noisy
for exp in sampling noise order adapt init; do
  for ds in ml100k syn5k; do
    data=$ds
    if [ "$exp" = noise ] && [ "$ds" = syn5k ]; then data=syn5k-noisy; fi  # its TN task is the noise
    echo "$(date +%T) $exp on $ds"
    nice querylearn experiment "$exp" --data "$data" --out "out/$ds-$exp" --seeds 0,1,2 --config "$cfg" \
      --jobs 2 > "logs/$ds-$exp.log" 2>&1
  done
done
echo "$(date +%T) done"
