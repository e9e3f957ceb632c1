"""What every response says about itself: its Content-Security-Policy, the browser features
it denies (Permissions-Policy), and, for private pages, that no cache may keep it."""

import re
from pathlib import Path

import pytest
from django.test import Client

from conversations.models import Conversation, Message, Share

pytestmark = pytest.mark.django_db
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def directives(response):
    """The Content-Security-Policy header as {directive: [source, ...]}."""
    header = response["Content-Security-Policy"]
    return {name: sources for name, *sources in (d.split() for d in header.split(";") if d.strip())}


@pytest.fixture
def share(conversation):
    return Share.take(conversation, audience=Share.Audience.ANYONE)


@pytest.fixture
def conversation(alice):
    conversation = Conversation.objects.create(owner=alice, title="Headers")
    question = Message.objects.create(conversation=conversation, role="user", content="Hello")
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="Hi",
        request={"model": "fake-model", "messages": []},
    )
    return conversation


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/c/{id}/",
        "/c/{id}/settings/",
        "/c/{id}/share/",
        "/c/{id}/export.json",
        "/s/{token}/",
        "/usage/",
        "/search/?q=x",
        "/settings/",
        "/settings/shares/",
        "/admin/",
        "/admin/conversations/conversation/",
        "/admin/conversations/share/",
    ],
)
def test_it_allows_scripts_styles_images_and_connections_from_this_origin_only(
    alice_admin, conversation, share, path
):
    response = alice_admin.get(path.format(id=conversation.id, token=share.token))

    assert response.status_code == 200
    assert directives(response) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/s/{token}/"])
def test_it_sends_the_policy_to_visitors_not_signed_in_too(share, path):
    response = Client().get(path.format(token=share.token))

    assert directives(response)["script-src"] == ["'self'"]


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: str(path.relative_to(TEMPLATES))
)
def test_no_template_holds_what_the_policy_would_refuse(template):
    """Pages no browser journey visits (sign-up closed, signed out...) are held to it too."""
    text = template.read_text()

    assert not re.search(r"<script(?![^>]*\bsrc=)", text)  # data comes through json_script
    assert not re.search(r"\sstyle=", text)  # classes only
    assert not re.search(r"\son[a-z]+=", text)
    assert "javascript:" not in text


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/static/confab/app.css"])
def test_it_denies_the_camera_microphone_location_and_other_features_a_chat_never_uses(
    client, alice, path
):
    client.force_login(alice)
    response = client.get(path)
    response.close()  # a static file's, left open otherwise

    denied = dict(feature.split("=") for feature in response["Permissions-Policy"].split(", "))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb", "display-capture"):
        assert denied[feature] == "()"
    assert "clipboard-write" not in denied  # the Copy buttons


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/c/{id}/",
        "/c/{id}/settings/",
        "/c/{id}/export.json",
        "/c/{id}/export.md",
        "/c/{id}/share/",
        "/m/{reply}/request.json",
        "/s/{token}/",
        "/search/?q=hello",
        "/usage/",
        "/settings/",
        "/settings/shares/",
    ],
)
def test_it_lets_no_cache_keep_a_private_page(client, alice, conversation, share, path):
    client.force_login(alice)
    reply = conversation.messages.get(role="assistant")

    response = client.get(path.format(id=conversation.id, reply=reply.id, token=share.token))

    assert response.status_code == 200
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= directives
