"""Share links: an owner shares a snapshot of a conversation's branch at `/s/<token>/`, for
the people of this Confab or anyone with the link; revocable, optionally expiring, and a
reader may continue it in a conversation of their own (models.shares)."""
