from django.contrib import admin
from django.contrib.auth.views import PasswordChangeView
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from conversations import views
from conversations.forms import PasswordChangeForm

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before Django's auth views: the password reset form of our own, single sign-on.
    path("", include("conversations.membership.urls")),
    # Before Django's own: on a fresh install signing in leads to creating the administrator.
    path("accounts/login/", views.sign_in, name="login"),
    path(
        "accounts/password_change/",
        PasswordChangeView.as_view(form_class=PasswordChangeForm),
        name="password_change",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("v1/", include("conversations.gateway.urls")),
    # Pages name their icon; browsers still ask for this one on pages that do not (admin).
    path("favicon.ico", RedirectView.as_view(url=static("confab/icon.svg"), permanent=True)),
    path("", include("conversations.urls")),
]
