module github.com/embedd/embedd

go 1.26

require (
	github.com/yalue/onnxruntime_go v1.27.0 // indirect
	go.yaml.in/yaml/v3 v3.0.4 // indirect
)
