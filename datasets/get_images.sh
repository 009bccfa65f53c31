#!/usr/bin/env bash
# Sample images for `--data real` in data/images: the original sample set when it can be downloaded,
# otherwise JPEGs written from scikit-image's bundled photographs.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p data/images
if ls data/images/*.jpg >/dev/null 2>&1; then
  echo "data/images already holds sample images"; exit 0
fi
URL="https://s3-us-west-1.amazonaws.com/gc-demo-resources/images224.tar.gz"
tmp=$(mktemp -d)
if curl -fsSL --connect-timeout 5 --max-time 60 -o "$tmp/images.tar.gz" "$URL" 2>/dev/null \
   && tar xzf "$tmp/images.tar.gz" -C "$tmp" 2>/dev/null; then
  find "$tmp" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -exec cp {} data/images/ \;
  echo "Downloaded the sample images into data/images"
else
  echo "Sample-image download unavailable; writing sample JPEGs from scikit-image's photographs"
  "$PY" datasets/make_sample_images.py data/images
fi
rm -rf "$tmp"
