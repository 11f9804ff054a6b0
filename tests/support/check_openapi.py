"""Calls every endpoint of docs/openapi.json on a real coordinator and validates each answer
against the document (Debian's python3-jsonschema; OpenAPI 3.1 schemas are JSON Schema 2020-12).

usage: check_openapi.py OPENAPI.json http://HOST:PORT JOB_ID
JOB_ID: a DONE job. The coordinator must take writes without a token (loopback, no keys) and have
a pool named "local"; the check submits, cancels and retries a job of its own.
Exits 0 when every answer holds to its schema; prints what did not and exits 1 otherwise. Also
checks that the document the coordinator serves is the repository's.
"""
import json
import pathlib
import sys
import urllib.error
import urllib.request

import jsonschema


def fetch(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    h = dict(headers or {})
    if body is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            ctype = r.headers.get("Content-Type", "")
            # An event stream never ends: its first line is enough.
            return r.status, ctype, r.readline() if "event-stream" in ctype else r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def main():
    doc_path = pathlib.Path(sys.argv[1]).resolve()
    base, job = sys.argv[2], sys.argv[3]
    doc = json.loads(doc_path.read_text())
    resolver = jsonschema.RefResolver(base_uri=doc_path.as_uri(), referrer=doc)
    failures = []
    calls = 0

    called = set()

    def check(path, url, want_status, method="GET", body=None, headers=None):
        nonlocal calls
        calls += 1
        called.add(path)
        status, ctype, body = fetch(base + url, method, body, headers)
        responses = doc["paths"][path][method.lower()]["responses"]
        if status != want_status or str(status) not in responses:
            failures.append(f"{url}: status {status}, expected {want_status}")
            return None
        response = responses[str(status)]
        if "$ref" in response:
            response = resolver.resolve(response["$ref"])[1]
        content = response.get("content", {})
        media = next(iter(content), None)
        if media and not ctype.startswith(media.split(";")[0]):
            failures.append(f"{url}: Content-Type {ctype}, expected {media}")
        schema = content.get(media, {}).get("schema") if media else None
        if schema is None or "event-stream" in ctype:
            return body
        try:
            value = json.loads(body)
            jsonschema.validate(value, schema, resolver=resolver,
                                cls=jsonschema.Draft202012Validator)
        except (ValueError, jsonschema.ValidationError) as e:
            failures.append(f"{url}: {str(e).splitlines()[0]}")
        return body

    check("/api/v1/jobs", "/api/v1/jobs", 200)
    check("/api/v1/jobs", "/api/v1/jobs?state=DONE&limit=1", 200)
    check("/api/v1/jobs", "/api/v1/jobs?colour=red", 400)
    check("/api/v1/jobs/{id}", f"/api/v1/jobs/{job}", 200)
    check("/api/v1/jobs/{id}", "/api/v1/jobs/999999", 404)
    check("/api/v1/jobs/{id}/logs", f"/api/v1/jobs/{job}/logs", 200)
    check("/api/v1/jobs/{id}/logs", "/api/v1/jobs/999999/logs", 404)
    for path in ("/api/v1/workers", "/api/v1/pools", "/api/v1/health", "/api/v1/version",
                 "/api/v1/status", "/metrics"):
        check(path, path, 200)
    # The writes, on a job of the check's own.
    manifest = ("version: 1\nname: openapi-check\nvideo: {width: 64, height: 64, fps: 24, "
                "frames: 24}\nmodel: {name: zoom, steps: 500}\ntimeline: [{at: 0, prompt: a}]\n")
    submit = {"manifest": manifest, "submission_id": "openapi-check"}
    created = check("/api/v1/jobs", "/api/v1/jobs", 201, "POST", submit)
    check("/api/v1/jobs", "/api/v1/jobs", 200, "POST", submit)
    check("/api/v1/jobs", "/api/v1/jobs", 400, "POST", {"manifest": "version: 1\n"})
    mine = json.loads(created)["id"] if created else "0"
    check("/api/v1/jobs/{id}/priority", f"/api/v1/jobs/{mine}/priority", 200, "POST",
          {"priority": 70})
    check("/api/v1/jobs/{id}/priority", f"/api/v1/jobs/{mine}/priority", 400, "POST",
          {"priority": -1})
    check("/api/v1/jobs/{id}/cancel", f"/api/v1/jobs/{mine}/cancel", 200, "POST")
    check("/api/v1/jobs/{id}/cancel", "/api/v1/jobs/999999/cancel", 404, "POST")
    check("/api/v1/jobs/{id}/retry", f"/api/v1/jobs/{mine}/retry", 200, "POST")
    check("/api/v1/jobs/{id}/retry", f"/api/v1/jobs/{mine}/retry", 400, "POST")
    check("/api/v1/jobs/{id}/cancel", f"/api/v1/jobs/{mine}/cancel", 200, "POST")
    check("/api/v1/jobs/{id}/output", f"/api/v1/jobs/{job}/output", 200)
    check("/api/v1/jobs/{id}/output", f"/api/v1/jobs/{job}/output", 206,
          headers={"Range": "bytes=0-99"})
    check("/api/v1/jobs/{id}/output", f"/api/v1/jobs/{job}/output", 416,
          headers={"Range": "bytes=999999999-"})
    check("/api/v1/jobs/{id}/output", f"/api/v1/jobs/{mine}/output", 409)
    check("/api/v1/jobs/{id}/output", "/api/v1/jobs/999999/output", 404)
    check("/api/v1/jobs/{id}/segments/{segment}/thumbnail",
          f"/api/v1/jobs/{job}/segments/0/thumbnail", 200)
    check("/api/v1/jobs/{id}/segments/{segment}/thumbnail",
          f"/api/v1/jobs/{job}/segments/99999/thumbnail", 404)
    check("/api/v1/events", "/api/v1/events", 200)
    check("/api/v1/events", f"/api/v1/events?job={job}", 200)
    check("/api/v1/events", "/api/v1/events?job=999999", 404)
    check("/api/v1/workers/{name}/drain", "/api/v1/workers/nobody/drain", 404, "POST")
    check("/api/v1/pools/{name}/scale", "/api/v1/pools/local/scale", 200, "POST", {"size": 0})
    check("/api/v1/pools/{name}/scale", "/api/v1/pools/local/scale", 400, "POST", {"size": "x"})
    check("/api/v1/pools/{name}/autoscale", "/api/v1/pools/local/autoscale", 200, "POST",
          {"enabled": False})
    served = check("/api/v1/openapi.json", "/api/v1/openapi.json", 200)
    if served is not None and json.loads(served) != doc:
        failures.append("/api/v1/openapi.json is not docs/openapi.json")
    # Every path of the document was called.
    missing = set(doc["paths"]) - called
    if missing:
        failures.append(f"endpoints of the document no check calls: {sorted(missing)}")
    for f in failures:
        print(f)
    print(f"{calls} calls, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
