"""Stored client ids become per user (Message.client_key): the same id from two users names
two sends, and no answer tells a user that another has used an id."""

import uuid

from django.db import migrations

# As conversations.models.conversations.CLIENT_IDS.
CLIENT_IDS = uuid.UUID("6a0f3c52-8d1e-4b7a-9c25-1f4e8b3d7a60")


def per_user(apps, schema_editor):
    Message = apps.get_model("conversations", "Message")
    messages = Message.objects.filter(client_id__isnull=False).select_related("conversation")
    for message in messages.iterator():
        owner = message.conversation.owner_id
        message.client_id = uuid.uuid5(CLIENT_IDS, f"{owner}:{message.client_id}")
        message.save(update_fields=["client_id"])


class Migration(migrations.Migration):
    dependencies = [("conversations", "0011_api_keys_and_usage_source")]

    operations = [migrations.RunPython(per_user, migrations.RunPython.noop)]
