#!/usr/bin/env bash
# Runs every test of collectord: installs the official Clarifai Node client
# used by the interop tests, then go vet and the race-enabled test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --prefix test/interop --no-audit --no-fund --loglevel=error
go vet ./...
go test -race -count=1 -timeout 40m ./...
