#!/usr/bin/env bash
# Train the three variants side by side on a GPU machine with the same time budget.
# usage: bash training/device_train.sh IMAGES_DIR OUT_DIR MINUTES [extra train.py args]
set -u
images=$1; out=$2; minutes=$3; shift 3
mkdir -p "$out" /tmp/runs
for v in residual cnn residual-small; do
  python3 training/train.py --images "$images" --variant "$v" --out "/tmp/runs/$v" \
    --steps 100000 --batch-size 16 --workers 5 --lr 0.001 \
    --set max_minutes="$minutes" threads=2 val_every=1000 ckpt_every=100000 "$@" \
    > "/tmp/runs/$v.log" 2>&1 &
done
wait
for v in residual cnn residual-small; do
  cp "/tmp/runs/$v/hndesc_$v.pt" "/tmp/runs/$v/log.csv" "$out/" 2>/dev/null
  mv "$out/log.csv" "$out/log_$v.csv" 2>/dev/null
  grep -a -E 'val MMA|done|Error|error' "/tmp/runs/$v.log" | tail -n 5
done
