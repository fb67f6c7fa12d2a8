#!/usr/bin/env bash
# The Python environment of the contract tests and the docs' Python example.
#
#   scripts/python-env.sh        make sure target/python-venv holds the pinned
#                                packages of tests/python/requirements.txt, and
#                                print the path of its python on standard output
#
# The virtualenv is reused while the requirements file is unchanged. Needs
# python3 (3.8 or newer) with its venv module; the packages come from PyPI as
# wheels (confluent-kafka's bundle librdkafka: no compiler needed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/target/python-venv
REQUIREMENTS=$ROOT/tests/python/requirements.txt
STAMP=$VENV/.requirements

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 not found; the Python contract test needs Python 3.8 or newer with venv and pip (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
  echo "error: $(python3 --version 2>&1) is too old; the Python contract test needs 3.8 or newer" >&2
  exit 1
fi

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && cmp -s "$REQUIREMENTS" "$STAMP" \
  && "$VENV/bin/python" -c 'import confluent_kafka, jsonschema' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "== creating $VENV with $(python3 --version 2>&1)" >&2
rm -rf "$VENV"
if ! python3 -m venv "$VENV" >&2; then
  echo "error: 'python3 -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
  rm -rf "$VENV"
  exit 1
fi
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
  --only-binary=:all: -r "$REQUIREMENTS" >&2; then
  echo "error: pip could not install $REQUIREMENTS into $VENV (is PyPI reachable, and is there a wheel for $(python3 --version 2>&1) on this platform?)" >&2
  rm -rf "$VENV"
  exit 1
fi
cp "$REQUIREMENTS" "$STAMP"
echo "$VENV/bin/python"
