// Package pb holds the Go types generated from webpubsub.proto, the schema of
// the protobuf subprotocols (client-protocol.md §8). wsproto's hand-written
// codec (DecodeProtobufMessage, AppendProtobuf*) is what the server runs; these
// types document the schema and let tests cross-check that codec against
// google.golang.org/protobuf.
//
// Regenerate after editing webpubsub.proto, from the repository root:
//
//	go generate ./wsproto/pb
//
// which needs protoc (apt-get install protobuf-compiler; libprotoc 3.21.12 made
// the committed file) and installs protoc-gen-go at the google.golang.org/protobuf
// version in go.mod into $(go env GOPATH)/bin, which must be on PATH.
package pb

//go:generate go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative webpubsub.proto
