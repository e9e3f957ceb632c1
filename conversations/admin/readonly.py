"""What administrators may read but never add, change or delete: the ledger, conversations,
the record of who read them."""


class ReadOnly:
    """A ModelAdmin mixin: the rows are shown, and nothing in them is changed here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
