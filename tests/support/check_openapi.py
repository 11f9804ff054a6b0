"""Calls every GET endpoint of docs/openapi.json on a real coordinator and validates each answer
against the document (Debian's python3-jsonschema; OpenAPI 3.1 schemas are JSON Schema 2020-12).

usage: check_openapi.py OPENAPI.json http://HOST:PORT JOB_ID
Exits 0 when every answer holds to its schema; prints what did not and exits 1 otherwise. Also
checks that the document the coordinator serves is the repository's.
"""
import json
import pathlib
import sys
import urllib.error
import urllib.request

import jsonschema


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def main():
    doc_path = pathlib.Path(sys.argv[1]).resolve()
    base, job = sys.argv[2], sys.argv[3]
    doc = json.loads(doc_path.read_text())
    resolver = jsonschema.RefResolver(base_uri=doc_path.as_uri(), referrer=doc)
    failures = []
    calls = 0

    def check(path, url, want_status):
        nonlocal calls
        calls += 1
        status, ctype, body = fetch(base + url)
        responses = doc["paths"][path]["get"]["responses"]
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
        if schema is None:
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
    served = check("/api/v1/openapi.json", "/api/v1/openapi.json", 200)
    if served is not None and json.loads(served) != doc:
        failures.append("/api/v1/openapi.json is not docs/openapi.json")
    # Every path of the document was called.
    called = {"/api/v1/jobs", "/api/v1/jobs/{id}", "/api/v1/jobs/{id}/logs", "/api/v1/workers",
              "/api/v1/pools", "/api/v1/health", "/api/v1/version", "/api/v1/status",
              "/api/v1/openapi.json", "/metrics"}
    missing = set(doc["paths"]) - called
    if missing:
        failures.append(f"endpoints of the document no check calls: {sorted(missing)}")
    for f in failures:
        print(f)
    print(f"{calls} calls, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
