#!/usr/bin/env bash
# The GPU check in one command (tools/gpu_check.py has the stages and options):
#   tools/gpu_check.sh OUTDIR                # on a GPU machine: CUDA tests, benchmark, demo training, < 8 min
#   tools/gpu_check.sh OUTDIR --device cpu   # tiny sizes on the CPU, to test the script
# Uses this checkout's mtnet_plugin (PYTHONPATH) and $PYTHON (default: python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$ROOT/tools/gpu_check.py" "$@"
