"""A member's own API keys: the page that makes, lists and revokes them. A new key is shown
once, on the page that made it; what is kept of it is its digest and its first characters."""

from datetime import timedelta

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from conversations.gateway.forms import ApiKeyForm
from conversations.models import ApiKey


@never_cache
@login_required
def api_keys(request):
    form = ApiKeyForm(request.POST or None, user=request.user)
    new_key = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        api_key, new_key = ApiKey.create(
            request.user,
            form.cleaned_data["name"],
            expires=timezone.now() + timedelta(days=days) if days else None,
            requests_per_minute=form.cleaned_data["requests_per_minute"],
            max_concurrent=form.cleaned_data["max_concurrent"],
        )
        api_key.allowed_models.set(form.cleaned_data["allowed_models"])
        form = ApiKeyForm(user=request.user)
    keys = request.user.api_keys.prefetch_related("allowed_models")
    return render(
        request,
        "conversations/api_keys.html",
        {
            "form": form,
            "keys": keys,
            "new_key": new_key,
            "base_url": request.build_absolute_uri("/v1"),
        },
    )


@login_required
@require_POST
def revoke_api_key(request, key_id):
    api_key = get_object_or_404(ApiKey.objects.filter(user=request.user), id=key_id)
    if api_key.revoked is None:
        api_key.revoked = timezone.now()
        api_key.save(update_fields=["revoked"])
    flash.success(request, _("The key “%(name)s” is revoked.") % {"name": api_key.name})
    return redirect("api_keys")
