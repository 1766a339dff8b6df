// Package pb holds the Go code generated from proto/: clarifaipb for the
// Clarifai v2 API subset and capturepb for capture records.
//
// Regenerate after changing a .proto file or proto/clarifai/api/http.yaml:
//
//	go generate ./internal/pb
package pb

//go:generate ../../scripts/genproto.sh
