"""Conversations are private from administrators. Admin shows their metadata only; a site
setting lets administrators open a conversation's text, and each opening is recorded
(models.ConversationReading, for superusers). For data requests, `manage.py
export_user_data` and `delete_user_data` (this package's `data`)."""
