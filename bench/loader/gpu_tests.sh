#!/usr/bin/env bash
# The loader's tests that need CUDA (and their neighbours), on a GPU host whose image has torch
# and pytest but not winnow: winnow is imported from this checkout through a small tree of
# symlinks (the package maps winnow.cache to ./cache and winnow.monitoring to ./monitoring,
# which a plain sys.path entry cannot).
#
#   python3 bench/loader/gpu_step.py --peer-wheels .bench/loader-peers ...   # unpacks the wheels
#   bash bench/loader/gpu_tests.sh                                           # then this
#
# winnow.cache's dependencies that the image may lack (xxhash, fsspec, ...) come from the site
# that gpu_step.py --peer-wheels unpacked (WINNOW_PEER_SITE, default its default place), appended
# to sys.path as gpu_step.py does: the image's own packages keep precedence. Extra arguments go
# to pytest. PYTHON picks the interpreter (default python3).
set -euo pipefail
ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd -P)
SITE=${WINNOW_PEER_SITE:-/tmp/winnow-gpu-bench/peer-site}
[ -d "$SITE" ] || echo "gpu_tests.sh: $SITE does not exist (run gpu_step.py --peer-wheels first" \
    "if the image lacks winnow.cache's dependencies)" >&2
TREE=$(mktemp -d)
trap 'rm -rf "$TREE"' EXIT  # removes the links, not what they point to
mkdir "$TREE/winnow"
ln -s "$ROOT"/winnow/*.py "$TREE/winnow/"
ln -s "$ROOT/cache" "$TREE/winnow/cache"
ln -s "$ROOT/monitoring" "$TREE/winnow/monitoring"
# From inside the tree (sys.path[0]): its winnow comes first. --import-mode=append: pytest puts
# the checkout (for `tests.cache...`) last on sys.path, not first, where its ./winnow (which has
# no cache) would shadow the tree's.
cd "$TREE"
"${PYTHON:-python3}" -c 'import sys; sys.path.append(sys.argv.pop(1)); import pytest; sys.exit(pytest.main(sys.argv[1:]))' \
    "$SITE" -q -p no:cacheprovider --import-mode=append --rootdir "$ROOT" -c "$ROOT/pyproject.toml" \
    "$ROOT/tests/cache/test_cache_gpu_register.py" "$ROOT/tests/cache/test_cache_gpu_pack_mix.py" \
    "$ROOT/tests/cache/test_cache_pack_resume.py" "$@"
