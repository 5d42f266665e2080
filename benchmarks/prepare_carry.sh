#!/usr/bin/env bash
# Fill .carry/ (git-ignored through .git/info/exclude) with what benchmarks/gpu_check.sh needs on the
# device machine, where ../shared does not travel: the VGG-19 slice, the training images, the UST
# baseline decoder of the quality report and, if given, a decoder checkpoint to resume training from.
#
#   bash benchmarks/prepare_carry.sh [CHECKPOINT]
#
# Then name .carry in the run's `carry` (about 35 MiB; the device tool's limit is 64 MiB in all).
set -eu
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
CARRY=.carry
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
mkdir -p "$CARRY/data" "$CARRY/runs"
cp "$SHARED/weights/vgg19_conv1_1-conv3_1_torchvision.pth" "$CARRY/"
rm -rf "$CARRY/data/content" "$CARRY/data/style" "$CARRY/ust_baseline"
cp -r "$SHARED/data/content" "$SHARED/data/style" "$CARRY/data/"
cp -r "$SHARED/weights/ust_baseline" "$CARRY/ust_baseline"
if [ $# -ge 1 ]; then cp "$1" "$CARRY/runs/decoder.ckpt"; fi
du -sh "$CARRY"
git status --short --ignored "$CARRY" | head -3
