#!/usr/bin/env bash
# Sample images for `--data real` in data/images: the original sample set when it can be downloaded,
# otherwise JPEGs written from scikit-image's bundled photographs. The images are written into a
# temporary folder in data/ and moved into data/images only when all are there, so a full disk never
# leaves a partial set that a later run would take as complete; a killed run's folder is removed here.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p data/images
rm -rf data/.images.*.tmp
if ls data/images/*.jpg >/dev/null 2>&1; then
  echo "data/images already holds sample images"; exit 0
fi
URL="https://s3-us-west-1.amazonaws.com/gc-demo-resources/images224.tar.gz"
tmp=$(mktemp -d)
stage=$(mktemp -d data/.images.XXXXXX.tmp)
trap 'rm -rf "$tmp" "$stage"' EXIT
if curl -fsSL --connect-timeout 5 --max-time 60 -o "$tmp/images.tar.gz" "$URL" 2>/dev/null \
   && tar xzf "$tmp/images.tar.gz" -C "$tmp" 2>/dev/null; then
  if ! find "$tmp" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -print0 | xargs -0 -r cp -t "$stage" 2>/dev/null; then
    echo "error: could not copy the downloaded sample images into $(pwd)/data (is the disk full?); data/images is unchanged." >&2
    exit 1
  fi
  mv "$stage"/* data/images/
  echo "Downloaded the sample images into data/images"
else
  echo "Sample-image download unavailable; writing sample JPEGs from scikit-image's photographs"
  "$PY" datasets/make_sample_images.py "$stage" || exit $?
  mv "$stage"/*.jpg data/images/
fi
