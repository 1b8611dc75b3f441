#!/usr/bin/env bash
# The main job: set up everything, run the default leaderboard (3 seeds), export the snapshot, build the site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/mcbench run --task fmnist --budget default --seeds 3 --fallback-digits
.venv/bin/mcbench leaderboard --budget default --export
.venv/bin/mcbench site build
echo "leaderboard: runs/leaderboard/leaderboard.csv (+ Pareto plots); snapshot: results/snapshot/; site: build/site/index.html"
