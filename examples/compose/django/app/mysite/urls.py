"""The paths examples/compose/django/rampart.toml routes: /api/auth/login/ (rate limited on
POST), /api/, /admin/ (allow-listed), /healthz/ (rampart's health check), the rest."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("healthz/", views.healthz),
    path(
        "api/auth/login/",
        auth_views.LoginView.as_view(template_name="login.html"),
        name="login",
    ),
    path("api/items/", views.items),
    path("admin/", admin.site.urls),
    path("welcome/", views.welcome),
    path("", views.home),
]
