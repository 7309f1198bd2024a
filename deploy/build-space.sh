#!/usr/bin/env bash
# Build a folder ready to push to a Hugging Face Docker Space: the committed tree, with the Space's
# YAML header put in front of README.md (the project README itself starts with the set-up commands).
# Usage: deploy/build-space.sh OUT_DIR   then: cd OUT_DIR && git init && git add -A && git commit -m space
#        && git push --force https://huggingface.co/spaces/ORG/NAME main
set -euo pipefail
out=${1:?usage: deploy/build-space.sh OUT_DIR}
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
mkdir -p "$out"
git -C "$top" archive HEAD | tar -x -C "$out"
cat "$top/deploy/space-header.yml" "$top/README.md" > "$out/README.md"
echo "Space folder ready in $out (Dockerfile, app, README with the Space header)"
