#!/bin/sh
# ResNet-50 on an IPU-POD16 (8 instances, 16 replicas), the original application's script.
# Extra train.py options may be appended: sh rn50_pod16.sh --imagenet-data-path <path>
POPLAR_ENGINE_OPTIONS='{"opt.enableMultiAccessCopies":"false"}' \
poprun --mpi-global-args="--allow-run-as-root --tag-output" --num-instances=8 --numa-aware=yes --num-replicas=16 --ipus-per-replica=1 python3 train.py --config resnet50_mk2 --dataloader-worker 24 --webdataset-memory-cache-ratio 0.2 --dataloader-rebatch-size 256 "$@"
