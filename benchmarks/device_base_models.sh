#!/bin/bash
# Issue 20 on a GPU, in one call of about 10 minutes: the mito2d pretraining (what ships as em2d-mito)
# and both leave-one-out models, trained side by side on one GPU for $MIN minutes each; then every
# zero-shot row of docs/benchmarks.md (rescale 1 and auto). Everything it measures lands in $OUT; the
# three model folders come back as $OUT/models.tar (em2d-mito: copy it over helpers/vemkit/base_models/
# and run `python benchmarks/base_models.py em2d-mito --write-card ...` as docs/benchmarks.md says).
#
# Before the calls, here (the device machine has torch but no network). The data are 67 MiB with
# CDeep3M, more than one call carries (64 MiB), so they travel in two parts, one per call, and stay
# in /tmp/vdata on the warm machine between the calls (.devdata/ is git-ignored):
#   mkdir -p .devdata && cd ../shared/data
#   tar -cf - isbi2012/data/membrane/train drosophila_vnc_sstem/stack1 flyem_medulla_fibsem/training_sample2/grayscale_maps \
#       flyem_medulla_fibsem/training_sample2/groundtruth.h5.gz | xz -9 > ../../main/.devdata/a.tar.xz   # ~39 MiB
#   tar -cf - cdeep3m_mito/mito_testsample | xz -9 > ../../main/.devdata/b.tar.xz                        # ~28 MiB
#   and the wheels torch does not bring, into .whl/ (the pip download line of benchmarks/device_session.sh).
# Call 1: `STAGE_ONLY=1 bash benchmarks/device_base_models.sh`, carry [".whl", ".devdata/a.tar.xz"] (set-up only);
# call 2 at once (the machine still warm): `bash benchmarks/device_base_models.sh`, carry [".devdata/b.tar.xz"],
# timeout_s 600. A CPU dry run: DEV=cpu MIN=0.3 VDATA=../shared/data bash benchmarks/device_base_models.sh
set -u
OUT=${OUT:-/tmp/devout}; mkdir -p "$OUT"
DEV=${DEV:-cuda}; MIN=${MIN:-6}
exec > >(tee -a "$OUT/base_models.log") 2>&1
date; T0=$(date +%s)
if [ -d .whl ] && [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
export PYTHONPATH=$PWD/helpers:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
export VEMKIT_DATA_DIR=${VDATA:-/tmp/vdata}
mkdir -p "$VEMKIT_DATA_DIR"
for part in .devdata/*.tar.xz; do  # whichever parts this call carried
  [ -f "$part" ] || continue
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$part" "$VEMKIT_DATA_DIR" || exit 4
  echo "extracted $part"
done
[ "${STAGE_ONLY:-0}" = 1 ] && { echo "set-up only, done in $(( $(date +%s) - T0 )) s"; exit 0; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, zarr, dask, vemkit.pretrain; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 5
echo "setup done in $(( $(date +%s) - T0 )) s"

W=${WORK:-/tmp/work}; rm -rf "$W"; mkdir -p "$W"
# the three pretrainings at once (one GPU; 16 CPU cores for their data)
OMP_NUM_THREADS=4 python3 -m vemkit.cli pretrain --recipe mito2d --out "$W/em2d-mito" --minutes "$MIN" --device "$DEV" \
  --quiet > "$OUT/pretrain_em2d-mito.log" 2>&1 & PIDS="$!"
for held in cdeep3m_mito drosophila_vnc_sstem; do
  OMP_NUM_THREADS=4 python3 benchmarks/base_models.py --leave-one-out "$held" --work "$W" --pretrain-minutes "$MIN" \
    --device "$DEV" --json "$OUT/loo_${held}.json" > "$OUT/loo_${held}.log" 2>&1 & PIDS="$PIDS $!"
done
wait $PIDS
echo "pretraining done at $(( $(date +%s) - T0 )) s"
tar -cf "$OUT/models.tar" -C "$W" em2d-mito loo-cdeep3m_mito loo-drosophila_vnc_sstem 2>/dev/null
# zero-shot rows: leave-one-out models on what they never saw, em2d-mito on both test splits
for held in cdeep3m_mito drosophila_vnc_sstem; do
  python3 benchmarks/base_models.py "$W/loo-$held" --datasets "$held" --rescale auto --device "$DEV" \
    --json "$OUT/zero_shot_loo_${held}_auto.json"
done
for r in 1 auto; do
  python3 benchmarks/base_models.py "$W/em2d-mito" --datasets cdeep3m_mito,drosophila_vnc_sstem --rescale "$r" \
    --device "$DEV" --json "$OUT/zero_shot_em2d-mito_$r.json"
done
python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print({k: r[k] for k in ('iterations', 'seconds', 'device')})" \
  "$W/em2d-mito/training.json"
echo "all done at $(( $(date +%s) - T0 )) s"
