"""What every response says about itself: its Content-Security-Policy."""

import pytest
from django.test import Client

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def directives(response):
    """The Content-Security-Policy header as {directive: [source, ...]}."""
    header = response["Content-Security-Policy"]
    return {name: sources for name, *sources in (d.split() for d in header.split(";") if d.strip())}


@pytest.fixture
def conversation(alice):
    conversation = Conversation.objects.create(owner=alice, title="Headers")
    Message.objects.create(conversation=conversation, role="user", content="Hello")
    return conversation


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/c/{id}/",
        "/c/{id}/settings/",
        "/c/{id}/export.json",
        "/usage/",
        "/search/?q=x",
        "/settings/",
        "/admin/",
        "/admin/conversations/conversation/",
    ],
)
def test_it_allows_scripts_styles_images_and_connections_from_this_origin_only(
    alice_admin, conversation, path
):
    response = alice_admin.get(path.format(id=conversation.id))

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


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/"])
def test_it_sends_the_policy_to_visitors_not_signed_in_too(path):
    response = Client().get(path)

    assert directives(response)["script-src"] == ["'self'"]
