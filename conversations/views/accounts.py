"""Signing up, a user's preferences for new conversations, and their usage."""

from datetime import timedelta

from django.contrib import messages as flash
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from conversations import quotas, reports
from conversations.forms import PreferencesForm, SignupForm
from conversations.models import Preferences, SiteSettings, UsageRecord


def signup(request):
    """The first account becomes the administrator; later ones need signup to be open."""
    first = not get_user_model().objects.exists()
    if not first and not SiteSettings.load().signup_open:
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = not get_user_model().objects.exists()
            user.save()
        login(request, user)
        if user.is_superuser:
            flash.success(request, _("Welcome! You are the administrator of this Confab."))
        return redirect("chat")
    return render(request, "registration/signup.html", {"form": form, "first": first})


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
