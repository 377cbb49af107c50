// Package httpapi is embedd's HTTP/JSON API: an OpenAI-compatible
// POST /v1/embeddings and GET /v1/models, a TEI-compatible POST /embed, and
// JSON for every unary RPC of the gRPC services at the RPC's own path
// (POST /embedd.v1.VectorService/Search), and GET /health (TEI's probe:
// 200 while the gRPC health service reports SERVING, else 503). It has no behaviour of its own:
// every request becomes one call of the gRPC server that also serves the
// gRPC listener, so validation, limits, auth, per-key rate and concurrency
// limits, metrics, audit and the error table are the same code on both
// transports.
//
// How a request reaches the gRPC services: the handler encodes the request
// message in protobuf, frames it as gRPC, and hands it to
// (*grpc.Server).ServeHTTP as a synthetic HTTP/2 request that carries the
// caller's Authorization or X-Api-Key header (as gRPC metadata), remote
// address and TLS connection state. grpc-go then runs the registered
// interceptors (auth, UTF-8 checks, message size limits) and the handler as
// for any gRPC call; the reply frame and the grpc-status trailers are read
// back from an in-memory ResponseWriter. Alternatives considered:
//   - An in-process gRPC client over an in-memory listener (grpc.NewClient
//     with a custom dialer): the same interceptors run, but the connection
//     is the server's, not the caller's. With --tls-cert the server's
//     credentials apply to every listener, so the in-memory connection
//     would need its own TLS handshake (and a client certificate under
//     --tls-client-ca); and the caller's mTLS identity and address (which
//     the auth interceptor and the audit log read from the peer) would be
//     lost. ServeHTTP takes both from the request, per call.
//   - grpc-gateway: its in-process registration (RegisterXHandlerServer)
//     calls the service implementation directly and skips the
//     interceptors, so auth and limits would need a second path; its
//     proxy mode is the in-memory client above, with generated code and
//     HTTP annotations in the .proto files on top.
//   - connect-go: a second RPC stack with its own interceptors; auth,
//     limits and metrics would be written twice.
//
// The generic RPC routes follow the Connect protocol's unary JSON shape:
// POST /<package.Service>/<Method>, a protojson body (field names in
// lowerCamelCase or as in the .proto; unknown fields are an error), a
// protojson reply, and on failure the status's HTTP code with
// {"code":"invalid_argument","message":"...","details":[...]}. Streaming
// RPCs (EmbedStream) are gRPC only. HTTP codes follow Google's standard
// mapping of gRPC codes (google/rpc/code.proto), in httpStatus.
//
// Invariants:
//   - Nothing here validates a request beyond decoding it; a bad field
//     comes back with the gRPC service's message (which names the item,
//     index and limit) and 400 (422 on /embed, as TEI does).
//   - Bodies are read up to Options.MaxBodyBytes (413 beyond); an encoded
//     request over Options.MaxMessageBytes is refused with 413 before the
//     gRPC server sees it (the gRPC listener refuses it the same way, with
//     RESOURCE_EXHAUSTED).
//   - Only the Authorization and X-Api-Key headers travel to the gRPC
//     server as metadata; other headers do not.
//
// Concurrency: the Handler is safe for concurrent use; each request is
// one independent gRPC call.
package httpapi

import (
	"fmt"
	"net/http"
	"sort"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// GRPCServer is what the API calls: *grpc.Server.
type GRPCServer interface {
	http.Handler
	// GetServiceInfo lists the registered services and their methods.
	GetServiceInfo() map[string]grpc.ServiceInfo
}

var _ GRPCServer = (*grpc.Server)(nil)

// Options configures a Handler.
type Options struct {
	// MaxBodyBytes is the largest request body read, in bytes; a larger
	// one is refused with 413. Default 32 MiB; zero or negative means the
	// default.
	MaxBodyBytes int64
	// MaxMessageBytes is the largest encoded request the gRPC server
	// accepts (embedd serve's --max-message-bytes); larger ones are
	// refused with 413. Default 16 MiB; zero or negative means the
	// default.
	MaxMessageBytes int
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{MaxBodyBytes: 32 << 20, MaxMessageBytes: 16 << 20}
}

// Handler serves the HTTP/JSON API.
type Handler struct {
	mux  *http.ServeMux
	call caller
	// Methods are the unary RPCs served as JSON, by full method name.
	methods map[string]method
	opts    Options
}

// method is one unary RPC: its full name and message types.
type method struct {
	name    string // "/embedd.v1.VectorService/Search"
	in, out protoreflect.MessageType
}

// New returns the API over gs. Every unary method of every service
// registered on gs when New runs gets a JSON route.
func New(gs GRPCServer, opts Options) (*Handler, error) {
	d := DefaultOptions()
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = d.MaxBodyBytes
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = d.MaxMessageBytes
	}
	h := &Handler{mux: http.NewServeMux(), call: caller{grpc: gs, maxMessage: opts.MaxMessageBytes}, methods: map[string]method{}, opts: opts}
	ms, err := unaryMethods(gs.GetServiceInfo())
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		h.methods[m.name] = m
		h.mux.HandleFunc("POST "+m.name, h.rpc(m))
	}
	h.mux.HandleFunc("POST /v1/embeddings", h.openAIEmbeddings)
	h.mux.HandleFunc("GET /v1/models", h.openAIModels)
	h.mux.HandleFunc("GET /v1/models/{model...}", h.openAIModel)
	h.mux.HandleFunc("POST /embed", h.teiEmbed)
	if _, ok := h.methods[methodHealthCheck]; ok {
		h.mux.HandleFunc("GET /health", h.health)
	}
	return h, nil
}

// Routes lists the paths served, sorted, for logs and docs.
func (h *Handler) Routes() []string {
	out := []string{"POST /v1/embeddings", "GET /v1/models", "GET /v1/models/{model}", "POST /embed"}
	if _, ok := h.methods[methodHealthCheck]; ok {
		out = append(out, "GET /health")
	}
	var rpcs []string
	for name := range h.methods {
		rpcs = append(rpcs, "POST "+name)
	}
	sort.Strings(rpcs)
	return append(out, rpcs...)
}

// ServeHTTP routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// unaryMethods resolves the unary methods of services against the
// generated descriptors linked into the binary.
func unaryMethods(services map[string]grpc.ServiceInfo) ([]method, error) {
	var out []method
	for svc, info := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			return nil, fmt.Errorf("httpapi: service %s: %w", svc, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("httpapi: %s is not a service", svc)
		}
		for _, mi := range info.Methods {
			if mi.IsClientStream || mi.IsServerStream {
				continue
			}
			md := sd.Methods().ByName(protoreflect.Name(mi.Name))
			if md == nil {
				return nil, fmt.Errorf("httpapi: method %s/%s has no descriptor", svc, mi.Name)
			}
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				return nil, fmt.Errorf("httpapi: %s/%s input: %w", svc, mi.Name, err)
			}
			outT, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				return nil, fmt.Errorf("httpapi: %s/%s output: %w", svc, mi.Name, err)
			}
			out = append(out, method{name: "/" + svc + "/" + mi.Name, in: in, out: outT})
		}
	}
	return out, nil
}

const methodHealthCheck = "/grpc.health.v1.Health/Check"

// health answers 200 while the server's overall health is SERVING, else
// 503, with the status as JSON.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	var out healthpb.HealthCheckResponse
	if err := h.call.invoke(r, methodHealthCheck, &healthpb.HealthCheckRequest{}, &out); err != nil {
		toAPIError(err).writeConnect(w)
		return
	}
	code := http.StatusServiceUnavailable
	if out.GetStatus() == healthpb.HealthCheckResponse_SERVING {
		code = http.StatusOK
	}
	writeJSON(w, code, map[string]string{"status": out.GetStatus().String()})
}
