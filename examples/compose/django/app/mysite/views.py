from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def items(request):
    return JsonResponse({"items": [{"id": 1, "name": "first"}, {"id": 2, "name": "second"}]})


@login_required
def welcome(request):
    return HttpResponse(f"<!doctype html><p>Welcome, {request.user.get_username()}.</p>")


def home(request):
    return HttpResponse(
        '<!doctype html><link rel="stylesheet" href="/static/css/site.css">'
        '<p><a href="/api/auth/login/">Log in</a></p>'
    )
