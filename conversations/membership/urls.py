from django.contrib.auth import views as auth_views
from django.urls import include, path

from conversations.membership import sso, views
from conversations.membership.forms import PasswordResetForm

urlpatterns = [
    # Django's reset view, with a form that sends no link to an account that may not use a
    # password under SSO only. The rest of the reset is Django's, under /accounts/ too.
    path(
        "accounts/password_reset/",
        auth_views.PasswordResetView.as_view(form_class=PasswordResetForm),
        name="password_reset",
    ),
    path("accounts/sso/", include(sso.urlpatterns)),
    path("invite/<str:token>/", views.accept_invitation, name="accept_invitation"),
    path("invite/<str:token>/sso/", views.invitation_sso, name="invitation_sso"),
]
