#!/bin/sh
# Rewrites README.md's usage block with the binary's real `ir-server -h`
# (crates/ir-server/tests/readme_help.rs checks that they agree).
set -eu
cd "$(dirname "$0")/.."
IR_SERVER_UPDATE_README=1 cargo test -p ir-server --test tests readme_help::
git --no-pager diff --stat README.md
