"""A plain WSGI app standing in for the Django project of examples/compose/django, served by
Gunicorn on a unix socket in tests/e2e_compose.rs. It answers the paths the example's
rampart.toml routes, behaves the way the proxy must correct (Server, X-Powered-By, its own
X-Frame-Options, a cookie without Secure), and echoes what it received so the test can check
forwarding."""

import json

# Large enough (over 1 KiB) for rampart to compress it.
FILLER = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "</p>\n"


def respond(start_response, status, content_type, body, extra=()):
    data = body.encode("utf-8")
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        # What a careless app sends: the strict preset removes the first and replaces the second.
        ("X-Powered-By", "standin"),
        ("X-Frame-Options", "SAMEORIGIN"),
    ]
    headers.extend(extra)
    start_response(status, headers)
    return [data]


def seen(environ):
    """What Django would see: the forwarding headers, the host and the scheme Gunicorn derived
    (Gunicorn believes X-Forwarded-Proto from a unix-socket peer: request.is_secure())."""
    return {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "host": environ.get("HTTP_HOST"),
        "scheme": environ.get("wsgi.url_scheme"),
        "x_forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
        "x_forwarded_proto": environ.get("HTTP_X_FORWARDED_PROTO"),
        "x_forwarded_host": environ.get("HTTP_X_FORWARDED_HOST"),
        "x_real_ip": environ.get("HTTP_X_REAL_IP"),
        "x_request_id": environ.get("HTTP_X_REQUEST_ID"),
        "accept_encoding": environ.get("HTTP_ACCEPT_ENCODING"),
    }


def django_parse_cookie(cookie):
    """Django's django.http.cookie.parse_cookie, to the letter (without unquoting): "; " and ";"
    separate cookies, a "," does not."""
    cookiedict = {}
    for chunk in cookie.split(";"):
        if "=" in chunk:
            key, val = chunk.split("=", 1)
        else:
            key, val = "", chunk
        key, val = key.strip(), val.strip()
        if key or val:
            cookiedict[key] = val
    return cookiedict


def application(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    if path == "/cookies/":
        raw = environ.get("HTTP_COOKIE", "")
        answer = {"raw": raw, "parsed": django_parse_cookie(raw)}
        return respond(start_response, "200 OK", "application/json", json.dumps(answer))
    if path == "/healthz/":
        return respond(start_response, "200 OK", "text/plain", "ok")
    if path == "/api/auth/login/" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        answer = {"login": "ok", "received": len(body)}
        return respond(start_response, "200 OK", "application/json", json.dumps(answer))
    if path == "/api/items/":
        items = {"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]}
        return respond(start_response, "200 OK", "application/json", json.dumps(items))
    if path == "/admin/":
        page = "<!doctype html><title>Site administration</title><h1>Django administration</h1>"
        return respond(start_response, "200 OK", "text/html; charset=utf-8", page)
    if path == "/":
        # `<` escaped so the JSON cannot end the <pre> early.
        echo = json.dumps(seen(environ), sort_keys=True).replace("<", "\\u003c")
        page = (
            "<!doctype html><title>Home</title>\n"
            f'<pre id="seen">{echo}</pre>\n'
            f"{FILLER}"
        )
        cookie = [("Set-Cookie", "sessionid=e2e-session; Path=/")]
        return respond(start_response, "200 OK", "text/html; charset=utf-8", page, cookie)
    return respond(start_response, "404 Not Found", "text/plain", "not found")
