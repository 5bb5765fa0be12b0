#!/usr/bin/env bash
# Check a GPU machine in one go: install genies into its preinstalled torch, transformers, peft and
# accelerate, run `genies doctor` (installation checks) and `genies doctor --gpu` for the embedded
# model's shape, run the pipeline end to end on that shape, then `doctor --gpu` for a 7B LLaMA shape.
#
#   scripts/gpu_check.sh --prepare   here, online: download the small wheels genies needs and a
#                                    bare GPU machine lacks, and bitsandbytes, into $WHEELS (.whl/gpu,
#                                    git-ignored)
#   scripts/gpu_check.sh             there, offline: install and check; results under $OUT
#   scripts/gpu_check.sh --dry-run   anywhere: what the doctor checks would run (no GPU needed)
#
# The GPU machines have no network (../shared/docs/NOTES.md): whatever genies imports at start-up
# beyond their packages (platformdirs, requests and its dependencies), setuptools to build the
# editable install, and bitsandbytes for the 4-bit checks come from $WHEELS, which travels with the
# working tree (carry .whl; bitsandbytes is 43 MB of the 64 MB a call may carry).
#
# Steps (CHECKS, in order): `install` (genies doctor), `shape:NAME` (genies doctor --gpu --shape
# NAME), `e2e` (genies run on a random-weights model of the embedded shape and the synthetic suite:
# lora and mms in bf16, then lora on the model in 4 bits, i.e. QLoRA; then genies plan for the same
# run); `w2s` (`genies w2s` with a lora student on the same model and shifts). Each step's output
# goes to $OUT/<step>.log, and each is cut off after its own timeout
# (STEP_TIMEOUT seconds; 7B steps get BIG_TIMEOUT) so that a hang still leaves the others' results.
# The last line of each doctor log is its JSON. $OUT gets seven files, under the device tool's eight. A summary
# of every step ends the output.
set -uo pipefail

cd "$(dirname "$0")/.."
# this checkout's virtual environment where there is one (here), else the machine's Python (there)
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
WHEELS=${WHEELS:-.whl/gpu}
OUT=${OUT:-gpu-check-out}
CHECKS=${CHECKS:-install shape:default e2e w2s shape:7b}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
BIG_TIMEOUT=${BIG_TIMEOUT:-240}
WORK=${WORK:-/tmp/genies-gpu-check}
# the e2e step's device and shape (cpu and tiny rehearse it without a GPU)
E2E_DEVICE=${E2E_DEVICE:-cuda}
E2E_SHAPE=${E2E_SHAPE:-default}
# module -> distribution, for what genies imports at start-up and a bare GPU machine may lack
RUNTIME="platformdirs:platformdirs requests:requests urllib3:urllib3 charset_normalizer:charset-normalizer idna:idna certifi:certifi"
OPTIONAL="bitsandbytes:bitsandbytes==0.50.2"
BUILD="setuptools wheel packaging"

prepare() {
  mkdir -p "$WHEELS"
  local dists=($BUILD)
  for pair in $RUNTIME $OPTIONAL; do dists+=("${pair#*:}"); done
  # the GPU machines run CPython 3.12 on x86-64
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
    --platform any --dest "$WHEELS" "${dists[@]}"
  ls -l "$WHEELS"
}

install() {
  local missing=()
  for pair in $RUNTIME $OPTIONAL; do
    local dist=${pair#*:}
    "$PYTHON" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${dist%%==*}")
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

# the pipeline on a GPU: random weights of the embedded shape saved as a model folder, two synthetic shifts
e2e() {
  rm -rf "$WORK" && mkdir -p "$WORK"
  export GENIES_HOME="$WORK/home"
  "$PYTHON" -c "import sys; from pathlib import Path; from genies.doctor.shapes import save_random_model, shape_spec; \
save_random_model(shape_spec(sys.argv[2]), Path(sys.argv[1]))" "$WORK/model" "$E2E_SHAPE" || return 1
  genies data synth "$WORK/synth" --size 40 || return 1
  "$PYTHON" -c "import json, sys; s = json.load(open(sys.argv[1])); json.dump(s[:2], open(sys.argv[2], 'w'))" \
    "$WORK/synth/shifts.json" "$WORK/synth/two.json" || return 1
  local run=(--model "$WORK/model" --shifts "$WORK/synth/two.json" --device "$E2E_DEVICE" --plain)
  echo "== genies run -i lora -i mms (bf16)"
  genies run "${run[@]}" -i lora -i mms --out "$WORK/run-bf16" || return 1
  cp "$WORK/run-bf16/manifest.json" "$WORK/run-bf16/first-manifest.json"
  echo "== the same command again: every job cached"
  genies run "${run[@]}" -i lora -i mms --out "$WORK/run-bf16" || return 1
  echo "== genies run -i lora --quantize 4bit (QLoRA)"
  genies run "${run[@]}" -i lora --quantize 4bit --out "$WORK/run-4bit" || return 1
  echo "== genies plan for the bf16 run (planner on this GPU)"
  genies plan --model "$WORK/model" --shifts "$WORK/synth/two.json" -i lora -i mms --device "$E2E_DEVICE" --data-root "$WORK/synth" || return 1
  "$PYTHON" - "$WORK" <<'PY' || return 1
import json, pathlib, sys
for run in ("run-bf16/first-manifest.json", "run-bf16/manifest.json", "run-4bit/manifest.json"):
    manifest = json.loads((pathlib.Path(sys.argv[1]) / run).read_text())
    jobs = manifest["jobs"]
    print(f"{run}: {len(jobs)} jobs, {sum(j['seconds'] for j in jobs):.1f} s in jobs, "
          f"{manifest['wall_seconds']:.1f} s wall, hardware {json.dumps(manifest['hardware'])}")
PY
}


# `genies w2s` on the e2e step's model and shifts: zero-shot weak labels from the model's first 2
# layers, a lora student trained on them with the soft loss, its ceiling, PGR and DE (the e2e step's
# runs already cover lora at `genies run`'s default cpu preset: packed pairs, the frozen-layer cache)
w2s_check() {
  if [ ! -d "$WORK/model" ] || [ ! -f "$WORK/synth/two.json" ]; then
    echo "the w2s step needs the e2e step's model and shifts: CHECKS=\"e2e w2s\""
    return 1
  fi
  export GENIES_HOME="$WORK/home"
  genies w2s --weak "$WORK/model:layers=2" --strong "$WORK/model" --weak-method zero_shot --method lora \
    --max-train 16 --max-eval 8 --shifts "$WORK/synth/two.json" --device "$E2E_DEVICE" --plain --out "$WORK/w2s" \
    || return 1
  "$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1])); \
print(f\"w2s: {len(d['sources'])} sources, {len(d['targets'])} targets\")" "$WORK/w2s/w2s.json"
}


case "${1:-}" in
  --prepare) prepare; exit $? ;;
  --dry-run)
    for check in $CHECKS; do
      case $check in shape:*) genies doctor --gpu --dry-run --shape "${check#shape:}" || exit 1 ;; esac
    done
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --dry-run]" >&2; exit 2 ;;
esac

mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi; "$PYTHON" -m pip list 2>/dev/null; } >"$OUT/machine.txt" 2>&1
install >"$OUT/pip-install.log" 2>&1 || { cat "$OUT/pip-install.log"; echo "genies did not install (see $OUT/pip-install.log)" >&2; exit 1; }
status=0
summary=()
for check in $CHECKS; do
  limit=$STEP_TIMEOUT
  case $check in *7b|*13b) limit=$BIG_TIMEOUT ;; esac
  name=${check/:/-}
  started=$SECONDS
  case $check in
    install) timeout "$limit" "$PYTHON" -c 'from genies.cli import main; main()' doctor --json ;;
    shape:*) timeout "$limit" "$PYTHON" -c 'from genies.cli import main; main()' doctor --gpu --shape "${check#shape:}" --json ;;
    e2e) export -f e2e genies; export PYTHON WORK E2E_DEVICE E2E_SHAPE; timeout "$limit" bash -c e2e ;;
    w2s) export -f w2s_check genies; export PYTHON WORK E2E_DEVICE E2E_SHAPE; timeout "$limit" bash -c w2s_check ;;
    *) echo "unknown check $check"; false ;;
  esac >"$OUT/$name.log" 2>&1
  rc=$?
  grep -v '^{' "$OUT/$name.log" | tail -n 40
  summary+=("$check: exit $rc in $((SECONDS - started)) s")
  [ "$rc" -eq 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit $status
