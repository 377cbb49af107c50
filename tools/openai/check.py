"""check.py: call embedd's OpenAI-compatible HTTP API with the official
OpenAI Python client (PyPI openai, pinned in tools/requirements.txt) and
print what it got as one JSON object, for cmd/embedd/http_openai_test.go to
compare with the gRPC Embed results of the same server.

Usage: check.py --base-url http://127.0.0.1:8080/v1 --api-key KEY \
         --model NAME --dimensions N --too-many-dimensions M TEXT...

The JSON object:
  openai_version   the client's version
  default          embeddings as the client returns them with no
                   encoding_format: it asks for base64 and decodes it
  float            embeddings with encoding_format="float"
  base64           the raw base64 strings of encoding_format="base64"
  base64_decoded   those strings decoded here (little-endian float32)
  dimensions       embeddings with dimensions=N (float)
  usage            prompt_tokens and total_tokens of the float call
  model            the model the server reports
  models           the ids of client.models.list()
  too_many         the error of dimensions=M (status, type, code, message)
  bad_key          the error of a call with a wrong API key
"""

import argparse
import base64
import json
import struct
import sys

import openai


def vectors(resp):
    return [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "status": e.status_code,
            "class": type(e).__name__,
            "type": body.get("type"),
            "code": body.get("code"),
            "message": body.get("message"),
        }
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--dimensions", type=int, required=True)
    p.add_argument("--too-many-dimensions", type=int, required=True)
    p.add_argument("texts", nargs="+")
    a = p.parse_args()

    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    out = {"openai_version": openai.__version__}

    out["default"] = vectors(client.embeddings.create(model=a.model, input=a.texts))
    fl = client.embeddings.create(model=a.model, input=a.texts, encoding_format="float")
    out["float"] = vectors(fl)
    out["usage"] = {"prompt_tokens": fl.usage.prompt_tokens, "total_tokens": fl.usage.total_tokens}
    out["model"] = fl.model
    b64 = vectors(client.embeddings.create(model=a.model, input=a.texts, encoding_format="base64"))
    out["base64"] = b64
    out["base64_decoded"] = [
        list(struct.unpack("<%df" % (len(raw) // 4), raw)) for raw in (base64.b64decode(s) for s in b64)
    ]
    out["dimensions"] = vectors(
        client.embeddings.create(model=a.model, input=a.texts, encoding_format="float", dimensions=a.dimensions)
    )
    out["models"] = [m.id for m in client.models.list()]
    out["too_many"] = error_of(
        lambda: client.embeddings.create(model=a.model, input=a.texts, dimensions=a.too_many_dimensions)
    )
    bad = openai.OpenAI(base_url=a.base_url, api_key="ek_not-a-key", max_retries=0, timeout=60)
    out["bad_key"] = error_of(lambda: bad.embeddings.create(model=a.model, input=a.texts))

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
