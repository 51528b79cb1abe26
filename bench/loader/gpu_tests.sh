#!/usr/bin/env bash
# The loader's tests that need CUDA (and their neighbours), on a GPU host whose image has torch
# and pytest but not winnow: winnow.cache is imported from this checkout through a small tree of
# symlinks (the package maps winnow.cache to ./cache, which a plain sys.path entry cannot).
#
#   python3 bench/loader/gpu_step.py --peer-wheels .bench/loader-peers ...   # unpacks the wheels
#   bash bench/loader/gpu_tests.sh                                           # then this
#
# winnow.cache's own dependencies the image may lack (zstandard, ...) come from the site that
# gpu_step.py --peer-wheels unpacked (WINNOW_PEER_SITE, default its default place). Extra
# arguments go to pytest. PYTHON picks the interpreter (default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SITE=${WINNOW_PEER_SITE:-/tmp/winnow-gpu-bench/peer-site}
TREE=$(mktemp -d)
trap 'rm -rf "$TREE"' EXIT
mkdir "$TREE/winnow"
ln -s "$ROOT"/winnow/*.py "$TREE/winnow/"
ln -s "$ROOT/cache" "$TREE/winnow/cache"
cd "$TREE"  # not the checkout: its ./winnow (without cache) must not come first on sys.path
# --import-mode=append: pytest appends the checkout (for `tests.cache...`) after the tree
PYTHONPATH="$TREE:$ROOT:$SITE" "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider --import-mode=append \
    --rootdir "$ROOT" -c "$ROOT/pyproject.toml" \
    "$ROOT/tests/cache/test_cache_gpu_register.py" "$ROOT/tests/cache/test_cache_gpu_pack_mix.py" \
    "$ROOT/tests/cache/test_cache_pack_resume.py" "$@"
