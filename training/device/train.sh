#!/usr/bin/env bash
# The adversarial stage on a GPU machine lent through the `device` tool, run from the repo root
# there after training/device/prepare.sh built device_kit/ here:
#   run(command="bash training/device/train.sh", carry=["device_kit"], timeout_s=600)
# It trains for MINUTES (default 7.5) and leaves last.pt, config.json and log.jsonl in $OUT;
# export and evaluate here (plc export, eval.fade_sweep ... model=DIR, plc eval), and commit the
# checkpoint to resume from. To continue a run in a later session, put its last.pt (with its
# config.json and log.jsonl) in device_kit/resume/ before device_kit travels: the run resumes it exactly (same STEPS).
# Settings (environment): STEPS (schedule length, default 20000), MINUTES, BATCH (256),
# WORKERS (batch-preparing processes, 12), INIT (checkpoint to start from), DEVICE (cuda).
set -euo pipefail
PY=${PY:-python3}
OUT=${OUT:-out/device}
mkdir -p "$OUT"
if [ -d device_kit/wheels ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    device_kit/wheels/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 12 batch workers on 16 cores: one thread each
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
RUN=runs/device
mkdir -p $RUN
start=(--init "${INIT:-training/checkpoints/plc-v3-last.pt}")
if [ -f device_kit/resume/last.pt ]; then
  for f in last.pt config.json log.jsonl; do [ -f device_kit/resume/$f ] && cp device_kit/resume/$f $RUN/; done
  start=(--resume)
fi
status=0
$PY -m plc.cli train --data device_kit/data/train/manifest.csv --dev device_kit/data/dev/manifest.csv --out $RUN \
  "${start[@]}" --device "${DEVICE:-cuda}" --batch-size "${BATCH:-256}" --workers "${WORKERS:-12}" \
  --adversarial 1 --disc-periods 2,3,5,7,11 --min-voicing 0.7 --lr 2e-4 --steps "${STEPS:-20000}" \
  --val-every "${VAL_EVERY:-500}" --plcmos-clips 0 --max-minutes "${MINUTES:-7.5}" \
  ${THREADS:+--threads $THREADS} 2>&1 | tee "$OUT/train.log" || status=$?
for f in last.pt config.json log.jsonl; do [ -f $RUN/$f ] && cp $RUN/$f "$OUT/"; done
ls -la "$OUT"
exit $status
