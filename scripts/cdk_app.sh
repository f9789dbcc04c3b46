#!/bin/sh
# The CDK app command (cdk.json "app"): app.py run by the project's own interpreter, so a plain
# `npx cdk synth` / `npx cdk deploy` works from any shell, whatever python3 its PATH finds.
# `make synth`, `make deploy` (any make target) install that interpreter in .venv/ first.
set -eu
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then
    exec .venv/bin/python app.py "$@"
fi
echo "runctl: no .venv/bin/python in $(pwd), trying python3 from PATH; if it cannot import" \
    "aws_cdk, run \`make synth\` (or \`make deploy\`) first: it installs the project's Python" \
    "environment" >&2
exec python3 app.py "$@"
