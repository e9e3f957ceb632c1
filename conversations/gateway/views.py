"""The team gateway: an OpenAI-compatible `/v1` for members' own scripts and tools.

A request is authenticated by a personal key (`Authorization: Bearer ck-…`), checked by the
chat's rules, admitted by the chat's admission (its limits, quotas and reservation), sent to
the provider, relayed as it streams, and settled in the ledger as the chat's requests are.
Errors have OpenAI's shapes and statuses, so OpenAI's own SDKs understand them.
"""

import asyncio
import functools
import json
from collections import Counter

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.http import JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from conversations import upstream
from conversations.gateway.forms import Invalid, ModelNotFound, available_models, clean_request
from conversations.gateway.relay import END, Chunks, Relay, completion_of, sse
from conversations.generation import admission
from conversations.generation.sending import fit_context
from conversations.generation.settle import Request
from conversations.models import ApiKey, UsageRecord
from conversations.upstream.events import Failed

MAX_BODY_BYTES = 16 * 1024 * 1024


def error(status, message, *, type="invalid_request_error", code=None, param=None, **headers):
    """An error as OpenAI's API answers one."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


# Admission's refusals, as OpenAI's statuses and codes.
REFUSALS = {
    "quota_exceeded": (429, "insufficient_quota", "insufficient_quota"),
    "rate_limited": (429, "rate_limit_exceeded", "requests"),
    "too_many": (429, "rate_limit_exceeded", "requests"),
    "busy": (503, "server_busy", "server_error"),
    "unavailable": (503, "server_busy", "server_error"),
    "signed_out": (401, "invalid_api_key", "invalid_request_error"),
    "too_long": (400, "context_length_exceeded", "invalid_request_error"),
}


def refused(refusal):
    status, code, kind = REFUSALS.get(refusal.code, (400, refusal.code, "invalid_request_error"))
    headers = {}
    if retry_after := refusal.extra.get("retry_after"):
        headers["Retry_After"] = str(retry_after)
    if refusal.code == "quota_exceeded":
        headers["x_should_retry"] = "false"  # OpenAI's SDKs would retry a 429 otherwise
    return error(status, str(refusal), type=kind, code=code, **headers)


def failed(failure):
    """A provider failure before the answer began: 503 when it could not be reached or
    was silent, else 502, with its message (keys redacted)."""
    status = 503 if failure.code in ("connection", "timeout") else 502
    return error(status, str(failure), type="upstream_error", code=failure.code)


@database_sync_to_async
def key_of(request):
    """The usable key a request bears, noting its use, or None."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    api_key = ApiKey.objects.by_key(key.strip())
    if api_key is not None:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used=timezone.now())
    return api_key


def unauthorised():
    return error(
        401,
        _("Incorrect API key provided. Make one in Confab under Settings → API keys."),
        code="invalid_api_key",
    )


def with_key(view):
    """An API view, for a caller with a usable key (its second argument); else 401. No
    cookies and no CSRF token: the key is the credential."""

    @csrf_exempt
    @functools.wraps(view)
    async def keyed(request):
        api_key = await key_of(request)
        if api_key is None:
            return unauthorised()
        return await view(request, api_key)

    return keyed


@require_GET
@with_key
async def models(request, api_key):
    listed = await database_sync_to_async(_listed)(api_key)
    return JsonResponse({"object": "list", "data": listed})


def _listed(api_key):
    models = list(available_models(api_key.user, api_key).select_related("provider"))
    shared = {name for name, count in Counter(m.upstream_id for m in models).items() if count > 1}
    return [
        {
            # The provider's id, unless two providers offer it: then the alias tells them apart.
            "id": model_name(model, shared),
            "object": "model",
            "created": int(model.created.timestamp()),
            "owned_by": model.provider.name,
        }
        for model in models
    ]


def model_name(model, shared=()):
    if model.upstream_id in shared and model.display_name:
        return model.display_name
    return model.upstream_id


@require_POST
@with_key
async def chat_completions(request, api_key):
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, _("The request is too large."))
    try:
        data = json.loads(request.body)
    except ValueError:
        return error(400, _("The body is not valid JSON."))
    try:
        started = await admission.admit(_start, api_key, data)
    except Invalid as invalid:
        return error(400, str(invalid), param=invalid.param)
    except ModelNotFound as missing:
        message = _("The model `%(model)s` does not exist or you do not have access to it.")
        return error(404, message % {"model": missing.name}, code="model_not_found")
    except admission.EventError as refusal:
        return refused(refusal)
    relay, stream, include_usage = started
    relay.start()
    if not stream:
        return await _whole(relay)
    return await _streamed(relay, include_usage)


def _start(api_key, data):
    """The request made real, in the database thread: checked, admitted, reserved."""
    user = api_key.user
    admission.check_account(user, api_key)
    model, messages, params, stream, include_usage = clean_request(user, api_key, data)
    body = upstream.build_body(model, messages, params, user.pk)
    # The caller chose the messages: none is dropped, but what cannot fit is refused.
    fit_context(model, messages, admission.max_output_tokens(body), trim=False)
    request = Request.to(
        model,
        user_id=user.pk,
        messages=messages,
        source=UsageRecord.Source.API,
        api_key_id=api_key.pk,
    )
    with transaction.atomic():
        admission.authorise(user, request, body, api_key=api_key)
    name = data["model"]
    return Relay(model.provider, body, request, name), stream, include_usage


async def _whole(relay):
    events = [event async for event in relay.events()]
    failure = next((e.error for e in events if type(e) is Failed), None)
    if failure is not None:
        return failed(failure)
    return JsonResponse(completion_of(relay))


async def _streamed(relay, include_usage):
    """The answer as it comes. A failure before anything was said is an HTTP error; after,
    an error event ends the stream."""
    first = await _first(relay)
    if type(first) is Failed:
        return failed(first.error)
    response = StreamingHttpResponse(
        _sse(relay, Chunks(relay, include_usage), first), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
    return response


async def _first(relay):
    """The first event, if it comes before a keep-alive is due (then None)."""
    try:
        return await asyncio.wait_for(relay.queue.get(), settings.CONFAB_KEEP_ALIVE_S)
    except TimeoutError:
        return None


async def _sse(relay, chunks, first):
    try:
        event = first
        while event is not END:
            if event is None:
                yield b": keep-alive\n\n"
            elif type(event) is Failed:
                error = {"message": str(event.error), "type": "upstream_error",
                         "code": event.error.code}  # fmt: skip
                yield sse({"error": error})
                break
            elif (chunk := chunks.of(event)) is not None:
                yield sse(chunk)
            try:
                event = await asyncio.wait_for(relay.queue.get(), settings.CONFAB_KEEP_ALIVE_S)
            except TimeoutError:
                event = None
        else:
            if usage := chunks.usage():
                yield sse(usage)
        yield b"data: [DONE]\n\n"
    finally:
        relay.stop()  # the caller went away, or the stream ended: nothing more to read
