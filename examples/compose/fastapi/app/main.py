"""A small FastAPI app behind rampart (../docker-compose.yml). Replace it with yours.

tests/e2e_compose.rs serves this file with Uvicorn and checks, through rampart, the security
headers, the hardened cookie, compression, rate-limit headers and what the app receives."""

import json
from html import escape

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

app = FastAPI()


@app.get("/healthz")
def healthz():
    """rampart's health_check asks this path."""
    return {"status": "ok"}


@app.get("/api/items")
def items():
    return {"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]}


@app.get("/", response_class=HTMLResponse)
def index(request: Request, response: Response):
    """What the app sees of the client through rampart (the forwarding headers; the scheme
    Uvicorn derives from X-Forwarded-Proto with --proxy-headers)."""
    seen = {
        "scheme": request.url.scheme,
        "host": request.headers.get("host"),
        "x_forwarded_for": request.headers.get("x-forwarded-for"),
        "x_forwarded_proto": request.headers.get("x-forwarded-proto"),
        "x_real_ip": request.headers.get("x-real-ip"),
        "x_request_id": request.headers.get("x-request-id"),
    }
    # No Secure attribute here: rampart adds it (the app only ever sees plain HTTP).
    response.set_cookie("session", "fastapi-session")
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in seen.items())
    return (
        "<!doctype html><title>FastAPI behind rampart</title>\n"
        f'<pre id="seen">{escape(json.dumps(seen, sort_keys=True), quote=False)}</pre>\n'
        f"<table>{rows}</table>\n"
        # Over 1 KiB, so rampart compresses it.
        + "<p>" + "FastAPI and Uvicorn, with rampart in front. " * 30 + "</p>\n"
    )
