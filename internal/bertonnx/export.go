package bertonnx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Export writes the ONNX model for the BERT encoder in cfg with weights from
// the safetensors file at weightsPath. The output is byte-for-byte
// deterministic for the same inputs. On error, w may hold a partial model.
// It is ExportWith with the zero Options.
func Export(w io.Writer, cfg Config, weightsPath string) error {
	return ExportWith(w, cfg, weightsPath, Options{})
}

// ExportWith is Export for the graph variant opts selects (see [Options]).
// Invalid options are reported, wrapping ErrInvalidOptions, before the
// weights are opened.
func ExportWith(w io.Writer, cfg Config, weightsPath string, opts Options) (err error) {
	if err := errors.Join(cfg.Validate(), opts.Validate()); err != nil {
		return err
	}
	st, err := openSafetensors(weightsPath)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	g, err := buildGraph(cfg, st, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", weightsPath, err)
	}
	return g.encode(w)
}

// ExportFile reads configPath and weightsPath and writes the model to dst
// atomically: to a temporary file in dst's directory, synced, then renamed
// over dst. On error dst is left as it was and the temporary file is removed.
// It is ExportFileWith with the zero Options.
func ExportFile(dst, configPath, weightsPath string) error {
	return ExportFileWith(dst, configPath, weightsPath, Options{})
}

// ExportFileWith is ExportFile for the graph variant opts selects.
func ExportFileWith(dst, configPath, weightsPath string, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	cfg, err := ReadConfig(configPath)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bertonnx: create temp file: %w", err)
	}
	name := tmp.Name()
	if err := writeSynced(tmp, cfg, weightsPath, opts); err != nil {
		return errors.Join(err, os.Remove(name))
	}
	if err := os.Rename(name, dst); err != nil {
		return errors.Join(fmt.Errorf("bertonnx: %w", err), os.Remove(name))
	}
	return nil
}

// writeSynced exports into f, makes it world-readable like any other model
// file, syncs and closes it.
func writeSynced(f *os.File, cfg Config, weightsPath string, opts Options) (err error) {
	defer func() {
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bertonnx: %w", cerr))
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := ExportWith(bw, cfg, weightsPath, opts); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bertonnx: write %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("bertonnx: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("bertonnx: %w", err)
	}
	return nil
}

// encode writes g as a ModelProto, every message's fields in field-number
// order. Initializer data is streamed, so the graph's length prefix is
// computed from the known sizes first; the count of bytes actually written is
// checked against it.
func (g *graph) encode(w io.Writer) error {
	var head []byte // GraphProto fields before the initializers
	for _, n := range g.nodes {
		head = appendBytes(head, graphNode, n.marshal())
	}
	head = appendString(head, graphName, "bert")

	type initEnc struct {
		header  []byte // TensorProto fields before raw_data
		trailer []byte // TensorProto fields after raw_data
		size    int64  // size of the TensorProto message
	}
	encs := make([]initEnc, len(g.inits))
	graphLen := int64(len(head))
	for i, in := range g.inits {
		e := initEnc{header: tensorHeader(in.name, in.dataType, in.dims), trailer: tensorTrailer(in.doc)}
		e.size = int64(len(e.header)) + lenFieldSize(tensorRawData, in.nbytes) + int64(len(e.trailer))
		encs[i] = e
		graphLen += lenFieldSize(graphInitializer, e.size)
	}

	seq := []dim{{param: DimBatch}, {param: DimSequence}}
	var tail []byte // GraphProto fields after the initializers
	for _, name := range []string{InputIDs, AttentionMask, TokenTypeIDs} {
		tail = appendBytes(tail, graphInput, marshalValueInfo(name, dataTypeInt64, seq))
	}
	for _, o := range g.outputs {
		tail = appendBytes(tail, graphOutput, marshalValueInfo(o.name, o.dataType, o.dims))
	}
	hidden := append(seq[:len(seq):len(seq)], dim{value: int64(g.cfg.HiddenSize)})
	for _, name := range g.hidden {
		tail = appendBytes(tail, graphValueInfo, marshalValueInfo(name, dataTypeFloat, hidden))
	}
	graphLen += int64(len(tail))

	model := appendInt64(nil, modelIRVersion, IRVersion)
	model = appendString(model, modelProducerName, ProducerName)
	model = appendString(model, modelProducerVersion, ProducerVersion)
	model = appendString(model, modelDocString, fmt.Sprintf(
		"BertModel encoder (no pooler): %d layers, hidden %d, %d heads, intermediate %d%s",
		g.cfg.NumHiddenLayers, g.cfg.HiddenSize, g.cfg.NumAttentionHeads, g.cfg.IntermediateSize, g.opts.describe()))
	model = appendKey(model, modelGraph, wireLengthDelimited)
	model = binary.AppendUvarint(model, uint64(graphLen))
	opset := appendString(nil, opsetDomain, "")
	opset = appendInt64(opset, opsetVersion, Opset)
	modelTail := appendBytes(nil, modelOpsetImport, opset)

	total := int64(len(model)) + graphLen + int64(len(modelTail))
	if total > math.MaxInt32 {
		return fmt.Errorf("%w: %d bytes; a single ONNX protobuf holds at most %d", ErrTooLarge, total, math.MaxInt32)
	}

	cw := &countingWriter{w: w}
	if _, err := cw.Write(model); err != nil {
		return err
	}
	if _, err := cw.Write(head); err != nil {
		return err
	}
	for i, in := range g.inits {
		b := appendKey(nil, graphInitializer, wireLengthDelimited)
		b = binary.AppendUvarint(b, uint64(encs[i].size))
		b = append(b, encs[i].header...)
		b = appendKey(b, tensorRawData, wireLengthDelimited)
		b = binary.AppendUvarint(b, uint64(in.nbytes))
		if _, err := cw.Write(b); err != nil {
			return err
		}
		start := cw.n
		if err := in.write(cw); err != nil {
			return fmt.Errorf("bertonnx: write initializer %s: %w", in.name, err)
		}
		if got := cw.n - start; got != in.nbytes {
			return fmt.Errorf("bertonnx: initializer %s: wrote %d bytes; want %d", in.name, got, in.nbytes)
		}
		if _, err := cw.Write(encs[i].trailer); err != nil {
			return err
		}
	}
	if _, err := cw.Write(tail); err != nil {
		return err
	}
	if _, err := cw.Write(modelTail); err != nil {
		return err
	}
	if cw.n != total {
		return fmt.Errorf("bertonnx: wrote %d bytes; want %d", cw.n, total)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("bertonnx: write model: %w", err)
	}
	return n, nil
}
