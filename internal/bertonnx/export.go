package bertonnx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
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
	if err := opts.validateFor(cfg); err != nil {
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
	if err := opts.validateFor(cfg); err != nil {
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

// encode writes g as a ModelProto: the bytes proto.Marshal gives for it,
// deterministic and with every message's fields in field-number order, but
// without holding the weights in memory. Every message is built from the
// onnxpb types and encoded by proto.Marshal except the three length-delimited
// fields that enclose the weights, ModelProto.graph, GraphProto.initializer
// and TensorProto.raw_data: the message around each is marshaled in two
// parts, the fields numbered below it and those above, and between them the
// field's tag and length (computed from the known sizes) are written and its
// content streamed. Encodings of fields in ascending order concatenate to the
// encoding of the whole message, so the output is exactly proto.Marshal's
// (TestExportIsProtoMarshal checks it); the count of bytes written is checked
// against the computed total.
func (g *graph) encode(w io.Writer) error {
	mo := proto.MarshalOptions{Deterministic: true}
	var errs []error
	marshal := func(m proto.Message) []byte {
		b, err := mo.Marshal(m)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	graphField := fieldNumber(&onnxpb.ModelProto{}, "graph")
	initField := fieldNumber(&onnxpb.GraphProto{}, "initializer")
	rawField := fieldNumber(&onnxpb.TensorProto{}, "raw_data")

	modelHead := marshal(&onnxpb.ModelProto{
		IrVersion:       proto.Int64(IRVersion),
		ProducerName:    proto.String(ProducerName),
		ProducerVersion: proto.String(ProducerVersion),
		DocString: proto.String(fmt.Sprintf(
			"BertModel encoder (no pooler): %d layers, hidden %d, %d heads, intermediate %d%s",
			g.cfg.NumHiddenLayers, g.cfg.HiddenSize, g.cfg.NumAttentionHeads, g.cfg.IntermediateSize, g.opts.describe(g.cfg.NumHiddenLayers))),
	})
	opsets := []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}}
	if g.opts.q8() {
		opsets = append(opsets, &onnxpb.OperatorSetIdProto{Domain: proto.String(msDomain), Version: proto.Int64(1)})
	}
	modelTail := marshal(&onnxpb.ModelProto{OpsetImport: opsets})
	graphHead := marshal(&onnxpb.GraphProto{Node: g.nodes, Name: proto.String("bert")})
	tail := &onnxpb.GraphProto{Output: g.outputs}
	for _, name := range []string{InputIDs, AttentionMask, TokenTypeIDs} {
		tail.Input = append(tail.Input, valueInfo(name, dataTypeInt64, dimParam(DimBatch), dimParam(DimSequence)))
	}
	for _, name := range g.hidden {
		tail.ValueInfo = append(tail.ValueInfo, valueInfo(name, dataTypeFloat,
			dimParam(DimBatch), dimParam(DimSequence), dimValue(int64(g.cfg.HiddenSize))))
	}
	graphTail := marshal(tail)

	type initEnc struct {
		head []byte // TensorProto fields before raw_data
		tail []byte // TensorProto fields after raw_data
		size int64  // size of the TensorProto message
	}
	encs := make([]initEnc, len(g.inits))
	graphLen := int64(len(graphHead)) + int64(len(graphTail))
	for i, in := range g.inits {
		e := initEnc{head: marshal(&onnxpb.TensorProto{
			Dims: in.dims, DataType: proto.Int32(int32(in.dataType)), Name: proto.String(in.name),
		})}
		if in.doc != "" {
			e.tail = marshal(&onnxpb.TensorProto{DocString: proto.String(in.doc)})
		}
		e.size = int64(len(e.head)) + lenFieldSize(rawField, in.nbytes) + int64(len(e.tail))
		encs[i] = e
		graphLen += lenFieldSize(initField, e.size)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bertonnx: encode model: %w", err)
	}

	total := int64(len(modelHead)) + lenFieldSize(graphField, graphLen) + int64(len(modelTail))
	if total > math.MaxInt32 {
		return fmt.Errorf("%w: %d bytes; a single ONNX protobuf holds at most %d", ErrTooLarge, total, math.MaxInt32)
	}

	cw := &countingWriter{w: w}
	b := appendTagLen(modelHead, graphField, graphLen)
	if _, err := cw.Write(append(b, graphHead...)); err != nil {
		return err
	}
	for i, in := range g.inits {
		b := appendTagLen(nil, initField, encs[i].size)
		b = append(b, encs[i].head...)
		if _, err := cw.Write(appendTagLen(b, rawField, in.nbytes)); err != nil {
			return err
		}
		start := cw.n
		if err := in.write(cw); err != nil {
			return fmt.Errorf("bertonnx: write initializer %s: %w", in.name, err)
		}
		if got := cw.n - start; got != in.nbytes {
			return fmt.Errorf("bertonnx: initializer %s: wrote %d bytes; want %d", in.name, got, in.nbytes)
		}
		if _, err := cw.Write(encs[i].tail); err != nil {
			return err
		}
	}
	if _, err := cw.Write(graphTail); err != nil {
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
