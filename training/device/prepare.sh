#!/usr/bin/env bash
# Build device_kit/ (git-ignored) for a training run on a GPU machine lent through the `device`
# tool, which receives only the checkout (64 MiB in all, ~25 MiB of it tracked files):
#   device_kit/data/train/  a FLAC subset of the training manifest (MAX_MB, default 26 MiB)
#   device_kit/data/dev/    the first 40 dev clips (the fixed validation loss events)
#   device_kit/wheels/      the packages the device image lacks (soundfile, librosa and theirs),
#                           for CPython 3.12 on x86-64, at the versions of this .venv
# Then: run(command="bash training/device/train.sh", carry=["device_kit"], timeout_s=600).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
MAX_MB=${MAX_MB:-26}
$PY -m training.subset --manifest "$DATA/train.csv" --out device_kit/data/train --max-mb "$MAX_MB" --seed 0
$PY -m training.subset --manifest "$DATA/dev.csv" --out device_kit/data/dev --first 40 --max-mb 8
version() { $PY -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf device_kit/wheels && mkdir -p device_kit/wheels
pkgs=""
for name in soundfile cffi pycparser librosa audioread decorator pooch platformdirs soxr; do
  pkgs="$pkgs $name==$(version $name)"
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d device_kit/wheels $pkgs
du -sh device_kit/data/train device_kit/data/dev device_kit/wheels
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
kit=$(du -sb device_kit | cut -f1)
echo "travels: $(( (tracked + kit) / 1048576 )) MiB of 64 (tracked files + device_kit)"
[ $(( tracked + kit )) -lt $(( 62 * 1048576 )) ] || { echo "over the 64 MiB the device takes: lower MAX_MB" >&2; exit 1; }
