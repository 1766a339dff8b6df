#!/usr/bin/env bash
# Regenerates the Go code under internal/pb from proto/ with pinned tools.
# Needs only Go and the module proxy: the tools are built into a temporary GOBIN.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT

GOBIN=$bin go install github.com/bufbuild/buf/cmd/buf@v1.75.0
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
GOBIN=$bin go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.34.0

rm -rf internal/pb/clarifaipb internal/pb/capturepb
PATH=$bin:$PATH buf generate
