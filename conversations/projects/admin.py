"""Projects and files in admin: who owns them, who they are shared with, how files stand.
Their text is not shown here (conversations are private from administrators: privacy/)."""

from django.contrib import admin

from conversations.models import File, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "model", "updated"]
    search_fields = ["name", "owner__username"]
    filter_horizontal = ["groups", "editors"]
    fields = ["name", "owner", "model", "groups", "editors", "created", "updated"]
    readonly_fields = ["owner", "created", "updated"]

    def has_add_permission(self, request):
        return False  # made by their owners, from the chat page


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "size", "status", "pages", "tokens", "created"]
    list_filter = ["status", "kind"]
    search_fields = ["name", "owner__username"]
    readonly_fields = [
        "name", "owner", "kind", "size", "status", "progress", "error", "pages", "tokens",
        "embedded", "embedding_model", "conversation", "project", "created",
    ]  # fmt: skip
    exclude = ["blob", "message", "checkpointed"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
