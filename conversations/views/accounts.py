"""Signing up, a sign-in refused for too many failures, a user's preferences for new
conversations, and their usage."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from conversations import quotas, reports
from conversations.forms import PreferencesForm, SignupForm
from conversations.membership.backends import PASSWORD_BACKEND
from conversations.models import BreakGlassAccount, Preferences, SiteSettings, UsageRecord

SIGNUP_WINDOW_S = 3600


def signup(request):
    """The first account becomes the administrator; later ones need signup to be open, and
    no SSO only (people then come in through the identity provider)."""
    first = not get_user_model().objects.exists()
    if not first and not _signup_open():
        return _signup_closed(request)
    form = SignupForm(request.POST or None)
    if request.method != "POST":
        return render(request, "registration/signup.html", {"form": form, "first": first})
    if _too_many_signups(request.META.get("REMOTE_ADDR", "")):
        form = SignupForm()
        context = {"form": form, "first": first, "too_many": True}
        return render(request, "registration/signup.html", context, status=429)
    # Who is first is decided under a lock on the site settings' row, so of simultaneous
    # sign-ups on a fresh install exactly one becomes the administrator, and the others
    # then find sign-up as the settings say (closed by default). SQLite's transactions
    # here are IMMEDIATE: the whole transaction is the lock.
    SiteSettings.load()  # the row exists before it is locked
    with transaction.atomic():
        site = SiteSettings.objects.select_for_update().get(pk=1)
        first = not get_user_model().objects.exists()
        if not first and not (site.signup_open and not settings.CONFAB_SSO_ONLY):
            return _signup_closed(request)
        if not form.is_valid():  # under the lock, so a username cannot be taken meanwhile
            return render(request, "registration/signup.html", {"form": form, "first": first})
        user = form.save(commit=False)
        user.is_staff = user.is_superuser = first
        user.save()
        if first and settings.CONFAB_SSO_ONLY:  # or no one could sign in to admin
            BreakGlassAccount.objects.create(user=user, note=_("The first account"))
    login(request, user, backend=PASSWORD_BACKEND)
    if user.is_superuser:
        flash.success(request, _("Welcome! You are the administrator of this Confab."))
    return redirect("chat")


def _signup_open():
    return SiteSettings.load().signup_open and not settings.CONFAB_SSO_ONLY


class SignIn(LoginView):
    """Django's sign-in, but on a fresh install, where there is nobody to sign in, the
    first visit lands on creating the administrator account."""

    def get(self, request, *args, **kwargs):
        if not get_user_model().objects.exists():
            return redirect("signup")
        return super().get(request, *args, **kwargs)


sign_in = SignIn.as_view()


def _signup_closed(request):
    return render(request, "registration/signup_closed.html", status=403)


def _too_many_signups(address):
    """More than CONFAB_SIGNUPS_PER_HOUR sign-up attempts from one address this clock hour:
    counted in the cache (Redis, across processes, when REDIS_URL is set)."""
    window = int(time.time() // SIGNUP_WINDOW_S)
    key = f"confab:signups:{address}:{window}"
    cache.add(key, 0, timeout=SIGNUP_WINDOW_S * 2)
    return cache.incr(key) > settings.CONFAB_SIGNUPS_PER_HOUR


def locked_out(request, *args, **kwargs):
    """The sign-in page again, saying that this account or address is locked out for now:
    what django-axes answers (AXES_LOCKOUT_CALLABLE) instead of any sign-in, right or wrong,
    once too many have failed."""
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {
        "form": form,
        "next": request.POST.get("next", request.GET.get("next", "")),
        "locked_out": _(
            "Too many failed sign-ins for this account or from this address. Try again in "
            "%(minutes)d minutes, or ask an administrator to unlock it."
        )
        % {"minutes": minutes},
    }
    return render(request, "registration/login.html", context, status=429)


@login_required
@cache_control(private=True, no_store=True)
def preferences(request):
    """My defaults for new conversations."""
    form = PreferencesForm(
        request.POST or None, instance=Preferences.of(request.user), user=request.user
    )
    if request.method == "POST" and form.is_valid():
        form.save()
        flash.success(request, _("Your defaults for new conversations are saved."))
        return redirect("preferences")
    return render(request, "conversations/preferences.html", {"form": form})


@login_required
@cache_control(private=True, no_store=True)
@require_GET
def my_usage(request):
    """What I used: this period against my quotas, per day and per model."""
    end = timezone.localdate()
    start = end - timedelta(days=29)
    records = UsageRecord.objects.filter(user=request.user, created__date__gte=start)
    return render(
        request,
        "conversations/usage.html",
        {
            "standings": quotas.standings(request.user),
            "totals": reports.totals(records),
            "chart": reports.daily_chart(records, "model", start, end),
            "by_model": reports.top(records, "model", limit=50),
            "by_key": reports.top(records.filter(api_key__isnull=False), "api_key", limit=50),
            "start": start,
            "end": end,
        },
    )
