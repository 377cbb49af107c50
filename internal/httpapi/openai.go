package httpapi

// The OpenAI-compatible routes: POST /v1/embeddings, GET /v1/models and
// GET /v1/models/{model}, thin adapters over EmbeddingService's Embed,
// ListModels and GetModel.
//
// Choices where OpenAI's API and embedd's differ:
//   - input takes a string or an array of strings; OpenAI's token-id
//     arrays are refused (400): embedd tokenizes with the model's own
//     tokenizer, and ids from another tokenizer would embed garbage.
//   - dimensions keeps the first N values and, for models whose output is
//     L2-normalized (all built-in ones), normalizes them again, as OpenAI
//     does; for a model that does not normalize the values are only
//     shortened. The model's manifest decides which N are allowed (its
//     Matryoshka sizes, when it lists them); more than the model's
//     dimensions, or an N it does not allow, is a 400 with the engine's
//     message naming the range.
//   - usage counts the tokens the model saw, special tokens included, as
//     EmbedResponse.total_tokens does.
//   - user is accepted and ignored.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"google.golang.org/grpc/codes"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// The gRPC methods the adapters call.
const (
	methodEmbed      = "/embedd.v1.EmbeddingService/Embed"
	methodListModels = "/embedd.v1.EmbeddingService/ListModels"
	methodGetModel   = "/embedd.v1.EmbeddingService/GetModel"
)

type openAIRequest struct {
	Input          json.RawMessage `json:"input"`
	Model          string          `json:"model"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int64          `json:"dimensions"`
	User           string          `json:"user"`
}

type openAIEmbedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32 or a base64 string
}

type openAIUsage struct {
	PromptTokens uint64 `json:"prompt_tokens"`
	TotalTokens  uint64 `json:"total_tokens"`
}

type openAIResponse struct {
	Object string            `json:"object"`
	Data   []openAIEmbedding `json:"data"`
	Model  string            `json:"model"`
	Usage  openAIUsage       `json:"usage"`
}

type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type openAIModelList struct {
	Object string        `json:"object"`
	Data   []openAIModel `json:"data"`
}

func (h *Handler) openAIEmbeddings(w http.ResponseWriter, r *http.Request) {
	body, err := h.readBody(w, r)
	if err != nil {
		writeOpenAIError(w, toAPIError(err))
		return
	}
	var req openAIRequest
	if e := decodeJSON(body, &req); e != nil {
		writeOpenAIError(w, e)
		return
	}
	texts, e := openAIInput(req.Input)
	if e != nil {
		writeOpenAIError(w, e)
		return
	}
	base64Out := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		base64Out = true
	default:
		writeOpenAIError(w, badRequest("encoding_format", "encoding_format %q is not one of float, base64", req.EncodingFormat))
		return
	}
	in := &embeddv1.EmbedRequest{Model: req.Model, Texts: texts}
	if req.Dimensions != nil {
		d := *req.Dimensions
		if d < 1 || d > math.MaxUint32 {
			writeOpenAIError(w, badRequest("dimensions", "dimensions %d must be at least 1", d))
			return
		}
		in.Dimensions = uint32(d)
	}
	var out embeddv1.EmbedResponse
	if err := h.call.invoke(r, methodEmbed, in, &out); err != nil {
		e := toAPIError(err)
		if e.grpcCode() == codes.NotFound {
			e.param = "model"
		}
		writeOpenAIError(w, e)
		return
	}
	resp := openAIResponse{Object: "list", Model: out.GetModel(), Data: make([]openAIEmbedding, len(out.GetEmbeddings())),
		Usage: openAIUsage{PromptTokens: out.GetTotalTokens(), TotalTokens: out.GetTotalTokens()}}
	for i, emb := range out.GetEmbeddings() {
		var v any = emb.GetFloat32()
		if base64Out {
			v = float32Base64(emb.GetFloat32())
		} else if emb.GetFloat32() == nil {
			v = []float32{}
		}
		resp.Data[i] = openAIEmbedding{Object: "embedding", Index: i, Embedding: v}
	}
	writeJSON(w, http.StatusOK, resp)
}

// openAIInput decodes input: a string or an array of strings.
func openAIInput(raw json.RawMessage) ([]string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badRequest("input", "input is required: a string or an array of strings")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest("input", "input: %v", err)
		}
		return []string{s}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, badRequest("input", "input: %v", err)
		}
		texts := make([]string, len(items))
		for i, it := range items {
			it = bytes.TrimSpace(it)
			switch {
			case len(it) > 0 && it[0] == '"':
				if err := json.Unmarshal(it, &texts[i]); err != nil {
					return nil, badRequest("input", "input[%d]: %v", i, err)
				}
			case i == 0 && len(it) > 0 && (it[0] == '-' || (it[0] >= '0' && it[0] <= '9')), len(it) > 0 && it[0] == '[':
				return nil, badRequest("input", "input[%d]: token arrays are not supported (embedd tokenizes with the model's tokenizer): send text", i)
			default:
				return nil, badRequest("input", "input[%d] is %s; want a string", i, it)
			}
		}
		return texts, nil
	}
	return nil, badRequest("input", "input is %s; want a string or an array of strings", raw)
}

// float32Base64 encodes v as OpenAI does: little-endian float32 bytes in
// standard base64.
func float32Base64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (h *Handler) openAIModels(w http.ResponseWriter, r *http.Request) {
	var out embeddv1.ListModelsResponse
	if err := h.call.invoke(r, methodListModels, &embeddv1.ListModelsRequest{}, &out); err != nil {
		writeOpenAIError(w, toAPIError(err))
		return
	}
	list := openAIModelList{Object: "list", Data: []openAIModel{}}
	for _, m := range out.GetModels() {
		list.Data = append(list.Data, openAIModel{ID: m.GetName(), Object: "model", OwnedBy: "embedd"})
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) openAIModel(w http.ResponseWriter, r *http.Request) {
	var out embeddv1.ModelInfo
	name := r.PathValue("model")
	if err := h.call.invoke(r, methodGetModel, &embeddv1.GetModelRequest{Name: name}, &out); err != nil {
		e := toAPIError(err)
		e.param = "model"
		writeOpenAIError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, openAIModel{ID: out.GetName(), Object: "model", OwnedBy: "embedd"})
}

// openAIErrorBody is OpenAI's error shape.
type openAIErrorBody struct {
	Error openAIErrorDetail `json:"error"`
}

type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// openAIType is OpenAI's error type for an HTTP code.
func openAIType(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	}
	return "server_error"
}

// writeOpenAIError writes e in OpenAI's shape; code is the gRPC code's
// name ("invalid_argument"), or "model_not_found" as OpenAI names it.
func writeOpenAIError(w http.ResponseWriter, e *apiError) {
	code := codeName(e.grpcCode())
	if e.grpcCode() == codes.NotFound && e.param == "model" {
		code = "model_not_found"
	}
	d := openAIErrorDetail{Message: e.msg, Type: openAIType(e.code), Code: &code}
	if e.param != "" {
		d.Param = &e.param
	}
	e.setRetryAfter(w)
	writeJSON(w, e.code, openAIErrorBody{Error: d})
}

// decodeJSON decodes a JSON object body into v; errors name the field.
func decodeJSON(body []byte, v any) *apiError {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return badRequest(te.Field, "%s is a JSON %s; want %s", te.Field, te.Value, typeName(te.Type.String()))
	}
	return badRequest("", "request body is not JSON: %v", err)
}

func typeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "*int64", "int64", "int":
		return "an integer"
	case "*bool", "bool":
		return "true or false"
	}
	return fmt.Sprintf("a %s", t)
}
