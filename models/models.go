// Package models holds the manifests of the models embedd knows, one folder
// per model (models/<name>/manifest.yaml), embedded into the binary. Weights
// are never stored here: `embedd models pull NAME` fetches them into the cache
// directory and checks each file's sha256.
package models

import "embed"

// FS holds every <name>/manifest.yaml.
//
//go:embed */manifest.yaml
var FS embed.FS

// Default is the model embedd uses when none is named: the server's
// default for requests without a model (`serve --model`), and `embedd
// embed` and `embedd bench`.
const Default = "all-minilm-l6-v2"
