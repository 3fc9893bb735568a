#!/bin/bash
# The GPU checks of one device session, as run on an H100 on 2026-11-26 (figures in README "Benchmarks"):
# phase 1 (in parallel): pretrain the two shipped base models, a GPU fine-tuning probe of the VNC
# transfer benchmark, and the 4 GB memory test; phase 2 (alone): the GPU inference benchmark.
#
# The device machine has torch but no network: carry the data and the missing wheels.
#   ( cd ../shared/data && tar -cf - isbi2012/data/membrane/train drosophila_vnc_sstem/stack1 \
#       flyem_medulla_fibsem/training_sample2/grayscale_maps flyem_medulla_fibsem/training_sample2/groundtruth.h5.gz \
#       | xz -9 > ../../main/.devdata/data.tar.xz )            # about 39 MiB; .devdata/ is git-ignored
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       zarr numcodecs donfig google-crc32c dask distributed partd locket pooch monai tblib zict tornado \
#       importlib-metadata zipp platformdirs deprecated
# then run `bash benchmarks/device_session.sh` there with carry [".whl", ".devdata"].
# A CPU dry run: DEV=cpu PRE="--iterations 1" TMIN=0.02 SHAPE=32,96,96 MEM=0 REPEATS=1 bash benchmarks/device_session.sh
set -u
OUT=${OUT:-/tmp/devout}; mkdir -p "$OUT"
DEV=${DEV:-cuda}; PRE=${PRE:---minutes 3}; TMIN=${TMIN:-1.5}; SHAPE=${SHAPE:-256,1024,1024}; MEM=${MEM:-4}
REPEATS=${REPEATS:-3}
exec > >(tee -a "$OUT/main.log") 2>&1
date; T0=$(date +%s)
if [ -d .whl ] && [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/helpers:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
export VEMKIT_DATA_DIR=${VDATA:-/tmp/vdata}
mkdir -p "$VEMKIT_DATA_DIR"; python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .devdata/data.tar.xz "$VEMKIT_DATA_DIR" || exit 4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
nproc; free -g | head -2
python3 -c "import torch, zarr, dask, monai, numcodecs, vemkit.predict; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'zarr', zarr.__version__, 'dask', dask.__version__, 'monai', monai.__version__)" || exit 5
echo "setup done in $(( $(date +%s) - T0 )) s"

W=${WORK:-/tmp/work}; rm -rf "$W"; mkdir -p "$W"
VEMKIT="python3 -c 'import sys; from vemkit.cli import main; sys.exit(main(sys.argv[1:]))'"
# phase 1 -------------------------------------------------------------------------------------------
OMP_NUM_THREADS=4 eval "$VEMKIT pretrain --out $W/em2d-small --sources isbi2012,flyem_medulla_fibsem,phantom \
  $PRE --batch-size 16 --device $DEV --quiet" > "$OUT/pretrainA.log" 2>&1 & PIDS="$!"
OMP_NUM_THREADS=4 eval "$VEMKIT pretrain --out $W/em2d-small-vnc --sources drosophila_vnc_sstem,flyem_medulla_fibsem,phantom \
  $PRE --batch-size 16 --device $DEV --quiet" > "$OUT/pretrainB.log" 2>&1 & PIDS="$PIDS $!"
OMP_NUM_THREADS=4 python3 benchmarks/transfer.py --device $DEV --minutes $TMIN --methods finetuned,scratch \
  --json "$W/transfer_gpu.json" > "$OUT/transfer_gpu.log" 2>&1 & PIDS="$PIDS $!"
if [ "$MEM" != 0 ]; then
  OMP_NUM_THREADS=4 timeout 300 python3 benchmarks/inference.py --memory-test $MEM --device $DEV --workdir /tmp/benchmem \
    > "$OUT/memory.log" 2>&1 & PIDS="$PIDS $!"
fi
wait $PIDS
echo "phase 1 done at $(( $(date +%s) - T0 )) s"
rm -rf /tmp/benchmem
tar -cf "$OUT/bases.tar" -C "$W" . 2>/dev/null
# phase 2: alone on the machine ----------------------------------------------------------------------
timeout 240 python3 benchmarks/inference.py --shape $SHAPE --repeats $REPEATS --device $DEV --workdir /tmp/bench \
  > "$OUT/inference.log" 2>&1
echo "inference rc $?; all done at $(( $(date +%s) - T0 )) s"
