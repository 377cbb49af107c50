package bertonnx

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// This file builds the onnx.proto messages the exporter writes, from the
// types generated into onnxpb; graph.encode has proto.Marshal encode them.

// Tensor element types of the graph.
const (
	dataTypeFloat   = onnxpb.TensorProto_FLOAT
	dataTypeInt64   = onnxpb.TensorProto_INT64
	dataTypeFloat16 = onnxpb.TensorProto_FLOAT16
	dataTypeInt8    = onnxpb.TensorProto_INT8
	dataTypeUint8   = onnxpb.TensorProto_UINT8
)

// msDomain is onnxruntime's contrib operator domain, which a Q8 graph
// imports at version 1 for MatMulIntegerToFloat.
const msDomain = "com.microsoft"

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INT.Enum(), I: &v}
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// tensorAttr is a tensor-valued attribute holding raw, little-endian data.
func tensorAttr(name string, dataType onnxpb.TensorProto_DataType, dims []int64, raw []byte) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_TENSOR.Enum(),
		T: &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(int32(dataType)), RawData: raw}}
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_FLOAT.Enum(), F: &v}
}

// dimValue is a graph input or output dimension of fixed size v.
func dimValue(v int64) *onnxpb.TensorShapeProto_Dimension {
	return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
}

// dimParam is a symbolic graph input or output dimension.
func dimParam(name string) *onnxpb.TensorShapeProto_Dimension {
	return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: name}}
}

// valueInfo describes a tensor of elemType and the given dims.
func valueInfo(name string, elemType onnxpb.TensorProto_DataType, dims ...*onnxpb.TensorShapeProto_Dimension) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{
		Name: &name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(elemType)),
			Shape:    &onnxpb.TensorShapeProto{Dim: dims},
		}}},
	}
}

// fieldNumber is the number of the field called name in m's message type.
func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// appendTagLen appends the tag and the length n of a length-delimited field
// whose n bytes of content the caller writes next.
func appendTagLen(b []byte, num protowire.Number, n int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.BytesType), uint64(n))
}

// lenFieldSize is the encoded size of a length-delimited field with n bytes
// of content.
func lenFieldSize(num protowire.Number, n int64) int64 {
	return int64(protowire.SizeTag(num)+protowire.SizeVarint(uint64(n))) + n
}
