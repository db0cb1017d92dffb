#!/usr/bin/env bash
# Start (or check) the local services the test suite needs. Idempotent.
set -euo pipefail
cmd=${1:-start}
case "$cmd" in
  start) ;;
  *) echo "usage: $0 start" >&2; exit 2 ;;
esac
