package bertonnx

import (
	"encoding/binary"
	"math"
)

// This file encodes the subset of onnx.proto (proto2) that the exporter
// writes, straight to protobuf wire format. Field numbers are those of
// onnx/onnx.proto. Repeated scalars that onnx.proto does not mark packed
// (TensorProto.dims, AttributeProto.ints) are written unpacked, as the
// reference protobuf encoder does. Fields are written in field-number order,
// as the reference encoder writes them, so the output is deterministic and
// equal to what onnx.load(...).SerializeToString() gives back.

// ModelProto fields.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
)

// OperatorSetIdProto fields.
const (
	opsetDomain  = 1
	opsetVersion = 2
)

// GraphProto fields.
const (
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	graphValueInfo   = 13
)

// NodeProto fields.
const (
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
)

// AttributeProto fields and AttributeType values.
const (
	attrName = 1
	attrF    = 2
	attrI    = 3
	attrInts = 8
	attrType = 20

	attrTypeFloat = 1
	attrTypeInt   = 2
	attrTypeInts  = 7
)

// TensorProto fields and DataType values.
const (
	tensorDims      = 1
	tensorDataType  = 2
	tensorName      = 8
	tensorRawData   = 9
	tensorDocString = 12

	dataTypeFloat   = 1
	dataTypeInt64   = 7
	dataTypeFloat16 = 10
)

// ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto and
// TensorShapeProto.Dimension fields.
const (
	valueInfoName       = 1
	valueInfoType       = 2
	typeTensorType      = 1
	typeTensorElemType  = 1
	typeTensorShape     = 2
	shapeDim            = 1
	dimValue            = 1
	dimParam            = 2
	wireVarint          = 0
	wireFixed32         = 5
	wireLengthDelimited = 2
)

func appendKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

// appendInt64 writes an int64 (or int32, or enum) field; negative values take
// ten bytes, as protobuf specifies.
func appendInt64(b []byte, field int, v int64) []byte {
	b = appendKey(b, field, wireVarint)
	return binary.AppendUvarint(b, uint64(v))
}

func appendFloat32(b []byte, field int, v float32) []byte {
	b = appendKey(b, field, wireFixed32)
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}

func appendBytes(b []byte, field int, v []byte) []byte {
	b = appendKey(b, field, wireLengthDelimited)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, field int, v string) []byte {
	b = appendKey(b, field, wireLengthDelimited)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// lenFieldSize is the encoded size of a length-delimited field whose payload
// is n bytes.
func lenFieldSize(field int, n int64) int64 {
	return int64(uvarintLen(uint64(field)<<3|wireLengthDelimited)) + int64(uvarintLen(uint64(n))) + n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// attribute is one NodeProto attribute of type INT, INTS or FLOAT.
type attribute struct {
	name string
	typ  int
	i    int64
	f    float32
	ints []int64
}

func intAttr(name string, v int64) attribute { return attribute{name: name, typ: attrTypeInt, i: v} }
func intsAttr(name string, v ...int64) attribute {
	return attribute{name: name, typ: attrTypeInts, ints: v}
}
func floatAttr(name string, v float32) attribute {
	return attribute{name: name, typ: attrTypeFloat, f: v}
}

func (a attribute) marshal() []byte {
	b := appendString(nil, attrName, a.name)
	switch a.typ {
	case attrTypeInt:
		b = appendInt64(b, attrI, a.i)
	case attrTypeFloat:
		b = appendFloat32(b, attrF, a.f)
	case attrTypeInts:
		for _, v := range a.ints {
			b = appendInt64(b, attrInts, v)
		}
	}
	return appendInt64(b, attrType, int64(a.typ))
}

// node is one NodeProto in the default domain.
type node struct {
	name    string
	opType  string
	inputs  []string
	outputs []string
	attrs   []attribute
}

func (n node) marshal() []byte {
	var b []byte
	for _, in := range n.inputs {
		b = appendString(b, nodeInput, in)
	}
	for _, out := range n.outputs {
		b = appendString(b, nodeOutput, out)
	}
	b = appendString(b, nodeName, n.name)
	b = appendString(b, nodeOpType, n.opType)
	for _, a := range n.attrs {
		b = appendBytes(b, nodeAttribute, a.marshal())
	}
	return b
}

// dim is one dimension of a graph input or output: a fixed size when param
// is empty, else a symbolic name.
type dim struct {
	value int64
	param string
}

// marshalValueInfo encodes a ValueInfoProto for a tensor of elemType.
func marshalValueInfo(name string, elemType int, dims []dim) []byte {
	var shape []byte
	for _, d := range dims {
		var db []byte
		if d.param != "" {
			db = appendString(db, dimParam, d.param)
		} else {
			db = appendInt64(db, dimValue, d.value)
		}
		shape = appendBytes(shape, shapeDim, db)
	}
	tt := appendInt64(nil, typeTensorElemType, int64(elemType))
	tt = appendBytes(tt, typeTensorShape, shape)
	typ := appendBytes(nil, typeTensorType, tt)
	b := appendString(nil, valueInfoName, name)
	return appendBytes(b, valueInfoType, typ)
}

// tensorHeader encodes the TensorProto fields that precede raw_data.
func tensorHeader(name string, dataType int, dims []int64) []byte {
	var b []byte
	for _, d := range dims {
		b = appendInt64(b, tensorDims, d)
	}
	b = appendInt64(b, tensorDataType, int64(dataType))
	return appendString(b, tensorName, name)
}

// tensorTrailer encodes the TensorProto fields that follow raw_data.
func tensorTrailer(doc string) []byte {
	if doc == "" {
		return nil
	}
	return appendString(nil, tensorDocString, doc)
}
