#!/usr/bin/env bash
# Check a GPU machine in one go: install genies into its preinstalled torch, transformers, peft and
# accelerate, then run `genies doctor --gpu` for the embedded model's shape and a 7B LLaMA shape.
#
#   scripts/gpu_check.sh --prepare   here, online: download the small wheels genies needs and a
#                                    bare GPU machine lacks into $WHEELS (.whl/gpu, git-ignored)
#   scripts/gpu_check.sh             there, offline: install and check; results under $OUT
#   scripts/gpu_check.sh --dry-run   anywhere: what the checks would run (no GPU needed)
#
# The GPU machines have no network (../shared/docs/NOTES.md): whatever genies imports at start-up
# beyond their packages (platformdirs, requests and its dependencies) and setuptools to build the
# editable install come from $WHEELS, which travels with the working tree (carry .whl). Each
# doctor run prints one line per check and ends with one JSON line; both go to $OUT/doctor-<shape>.log
# and the JSON line alone to $OUT/doctor-<shape>.json. The two runs take a few minutes on one H100;
# each is cut off after DOCTOR_TIMEOUT seconds so that a hang still leaves the other's results.
set -uo pipefail

cd "$(dirname "$0")/.."
# this checkout's virtual environment where there is one (here), else the machine's Python (there)
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
WHEELS=${WHEELS:-.whl/gpu}
OUT=${OUT:-gpu-check-out}
SHAPES=${SHAPES:-default 7b}
DOCTOR_TIMEOUT=${DOCTOR_TIMEOUT:-420}
# module -> distribution, for what genies imports at start-up and a bare GPU machine may lack
RUNTIME="platformdirs:platformdirs requests:requests urllib3:urllib3 charset_normalizer:charset-normalizer idna:idna certifi:certifi"
BUILD="setuptools wheel packaging"

prepare() {
  mkdir -p "$WHEELS"
  local dists=($BUILD)
  for pair in $RUNTIME; do dists+=("${pair#*:}"); done
  # the GPU machines run CPython 3.12 on x86-64
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform any --dest "$WHEELS" "${dists[@]}"
  ls -l "$WHEELS"
}

install() {
  local missing=()
  for pair in $RUNTIME; do
    "$PYTHON" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing from $WHEELS: ${missing[*]}"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" "${missing[@]}" || return 1
  fi
  # build isolation takes setuptools and wheel from $WHEELS; without them, the machine's own setuptools
  "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" -e . \
    || "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .
}

genies() { "$PYTHON" -c 'from genies.cli import main; main()' "$@"; }

case "${1:-}" in
  --prepare) prepare; exit $? ;;
  --dry-run)
    for shape in $SHAPES; do genies doctor --gpu --dry-run --shape "$shape" || exit 1; done
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --dry-run]" >&2; exit 2 ;;
esac

mkdir -p "$OUT"
{ nvidia-smi; "$PYTHON" -m pip list 2>/dev/null; } >"$OUT/machine.txt" 2>&1
install 2>&1 | tee "$OUT/install.log" || { echo "genies did not install (see $OUT/install.log)" >&2; exit 1; }
status=0
# the installation checks first: without the embedded model, random weights in its shape, in bf16 on the GPU
timeout "$DOCTOR_TIMEOUT" "$PYTHON" -c 'from genies.cli import main; main()' doctor --json 2>&1 | tee "$OUT/doctor-install.log"
rc=${PIPESTATUS[0]}
tail -n 1 "$OUT/doctor-install.log" >"$OUT/doctor-install.json"
echo "doctor: exit $rc"
[ "$rc" -eq 0 ] || status=1
for shape in $SHAPES; do
  timeout "$DOCTOR_TIMEOUT" "$PYTHON" -c 'from genies.cli import main; main()' doctor --gpu --shape "$shape" --json 2>&1 \
    | tee "$OUT/doctor-$shape.log"
  rc=${PIPESTATUS[0]}
  tail -n 1 "$OUT/doctor-$shape.log" >"$OUT/doctor-$shape.json"
  echo "doctor --gpu --shape $shape: exit $rc"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
