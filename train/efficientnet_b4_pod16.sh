#!/bin/sh
# EfficientNet-B4 (G16, group norm) on an IPU-POD16: half-resolution training, then fine-tuning,
# the original application's script. Extra train.py options may be appended.
poprun \
    --mpi-global-args="--allow-run-as-root --tag-output" \
    --numa-aware=yes \
    --num-instances=4 \
    --num-replicas=4 \
    --ipus-per-replica=4 \
python3 train.py \
    --config=efficientnet-b4-g16-gn-16ipu-mk2 \
    --batch-size 15 \
    --gradient-accumulation 13 \
    --half-res-training \
    --fine-tune-epoch 2 \
    --fine-tune-lr 0.25 \
    --fine-tune-batch-size 6 \
    --fine-tune-gradient-accumulation 32 \
    --fine-tune-first-trainable-layer blocks/6/1 \
    --dataloader-worker=16 \
    "$@"
