"""What an administrator sets for the whole site: the default model, and titles."""

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from conversations.models import LanguageModel, Preferences, Provider, SiteSettings
from tests.helpers import add_model

pytestmark = pytest.mark.django_db


def test_adding_or_enabling_a_model_never_changes_anyones_default(client, alice, model):
    older = add_model(model.provider, "aaa-older", display_name="AAA older", enabled=False)
    client.force_login(alice)
    assert "Fake model" in client.get(reverse("chat")).content.decode()
    first_choice = client.get(reverse("offered_models")).json()["selected"]

    elsewhere = Provider.objects.create(name="AAA relay", base_url="http://127.0.0.1:9/v1")
    add_model(elsewhere, "aaa-new", display_name="AAA new")  # sorts first in the picker
    older.enabled = True
    older.save()

    offer = client.get(reverse("offered_models")).json()
    assert offer["options"][0]["label"] == "AAA new"
    assert first_choice == offer["selected"] == str(model.public_id)
    assert SiteSettings.load().default_model == model


def site_settings_form(**changes):
    """The site settings' admin form as it stands, with `changes`."""
    data = {}
    for name, value in {**model_to_dict(SiteSettings.load()), **changes}.items():
        if value is True:
            data[name] = "on"
        elif value not in (False, None):
            data[name] = value
    return data


def test_the_site_default_is_an_administrators_setting(alice_admin, alice, model):
    other = add_model(model.provider, "other", display_name="Other model")

    response = alice_admin.post(
        reverse("admin:conversations_sitesettings_change", args=[SiteSettings.load().pk]),
        site_settings_form(default_model=other.pk),
    )

    assert response.status_code == 302
    assert alice_admin.get(reverse("offered_models")).json()["selected"] == str(other.public_id)


def test_a_users_own_choice_wins_over_the_site_default(client, alice, model):
    mine = add_model(model.provider, "mine", display_name="My model")
    Preferences.objects.create(user=alice, model=mine)
    client.force_login(alice)

    assert client.get(reverse("offered_models")).json()["selected"] == str(mine.public_id)


def test_a_send_without_a_model_uses_the_site_default(alice, model):
    from conversations.generation.sending import default_model

    add_model(
        Provider.objects.create(name="AAA", base_url="http://127.0.0.1:9/v1"),
        "aaa",
        display_name="A",
    )

    assert default_model(alice, None) == model
    assert LanguageModel.objects.available().first().upstream_id == "aaa"  # what it used to pick
