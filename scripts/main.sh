#!/usr/bin/env bash
# The main job: set up everything, run the default leaderboard (3 seeds), export the snapshot, build the site.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# torch threads: the machine's cores, at most 2 (the setting the README's figures were measured in); a 1-core
# machine runs the same sweep with 1 thread (rows record cpu_threads, so they form their own leaderboard)
threads=$(nproc); if [ "$threads" -gt 2 ]; then threads=2; fi
.venv/bin/mcbench run --task fmnist --budget default --seeds 3 --threads "$threads" --fallback-digits
.venv/bin/mcbench leaderboard --budget default --export
.venv/bin/mcbench site build
echo "leaderboard: runs/leaderboard/leaderboard.csv (+ Pareto plots); snapshot: results/snapshot/; site: build/site/index.html"
