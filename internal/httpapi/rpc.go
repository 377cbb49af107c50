package httpapi

import (
	"bytes"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
)

// rpc serves one unary RPC as JSON: protojson in (an empty body is the
// empty message), protojson out, Connect-style errors.
func (h *Handler) rpc(m method) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := h.readBody(w, r)
		if err != nil {
			toAPIError(err).writeConnect(w)
			return
		}
		in := m.in.New().Interface()
		if len(bytes.TrimSpace(body)) > 0 {
			if err := protojson.Unmarshal(body, in); err != nil {
				badRequest("", "request body is not a JSON %s: %v", m.in.Descriptor().FullName(), err).writeConnect(w)
				return
			}
		}
		out := m.out.New().Interface()
		if err := h.call.invoke(r, m.name, in, out); err != nil {
			toAPIError(err).writeConnect(w)
			return
		}
		writeProto(w, out)
	}
}
