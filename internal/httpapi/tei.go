package httpapi

// The TEI-compatible route (text-embeddings-inference): POST /embed, a
// thin adapter over Embed. inputs is a string or an array of strings;
// normalize (default: the model's setting, L2 for the built-in models, as
// TEI's default true), truncate (default false, as in TEI) and dimensions
// map to EmbedRequest's fields. The reply is an array of float arrays.
// Errors take TEI's shape, {"error": "...", "error_type": "Validation"},
// and TEI's codes: 422 for a request the model cannot take, 413 for a body
// over the limit, 429 when overloaded; others as the RPC routes.

import (
	"encoding/json"
	"math"
	"net/http"

	"google.golang.org/grpc/codes"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

type teiRequest struct {
	Inputs              json.RawMessage `json:"inputs"`
	Normalize           *bool           `json:"normalize"`
	Truncate            bool            `json:"truncate"`
	TruncationDirection string          `json:"truncation_direction"`
	Dimensions          *int64          `json:"dimensions"`
}

type teiError struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

func (h *Handler) teiEmbed(w http.ResponseWriter, r *http.Request) {
	body, err := h.readBody(w, r)
	if err != nil {
		writeTEIError(w, toAPIError(err))
		return
	}
	var req teiRequest
	if e := decodeJSON(body, &req); e != nil {
		writeTEIError(w, e)
		return
	}
	texts, e := openAIInput(req.Inputs)
	if e != nil {
		e.msg = "inputs" + e.msg[len("input"):] // the same checks, TEI's field name
		writeTEIError(w, e)
		return
	}
	switch req.TruncationDirection {
	case "", "Right", "right":
	default:
		writeTEIError(w, badRequest("truncation_direction", "truncation_direction %q is not supported; embedd truncates on the right", req.TruncationDirection))
		return
	}
	in := &embeddv1.EmbedRequest{Texts: texts, Truncate: req.Truncate, Normalize: req.Normalize}
	if req.Dimensions != nil {
		if d := *req.Dimensions; d < 1 || d > math.MaxUint32 {
			writeTEIError(w, badRequest("dimensions", "dimensions %d must be at least 1", d))
			return
		}
		in.Dimensions = uint32(*req.Dimensions)
	}
	var out embeddv1.EmbedResponse
	if err := h.call.invoke(r, methodEmbed, in, &out); err != nil {
		writeTEIError(w, toAPIError(err))
		return
	}
	vecs := make([][]float32, len(out.GetEmbeddings()))
	for i, emb := range out.GetEmbeddings() {
		vecs[i] = emb.GetFloat32()
		if vecs[i] == nil {
			vecs[i] = []float32{}
		}
	}
	writeJSON(w, http.StatusOK, vecs)
}

func writeTEIError(w http.ResponseWriter, e *apiError) {
	code, typ := e.code, "Backend"
	switch c := e.grpcCode(); {
	case e.code == http.StatusRequestEntityTooLarge:
		typ = "Validation"
	case c == codes.InvalidArgument, c == codes.FailedPrecondition, c == codes.OutOfRange, c == codes.NotFound:
		code, typ = http.StatusUnprocessableEntity, "Validation"
	case c == codes.ResourceExhausted:
		typ = "Overloaded"
	case c == codes.Unavailable:
		typ = "Unhealthy"
	case c == codes.Unauthenticated, c == codes.PermissionDenied:
		typ = "Unauthorized"
	}
	e.setRetryAfter(w)
	writeJSON(w, code, teiError{Error: e.msg, ErrorType: typ})
}
