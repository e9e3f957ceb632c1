"""The tools models may call: Confab's own, each turned on here, and MCP tool servers (their
headers write-only), whose tools are listed by the "test / refresh tools" action."""

from django.contrib import admin, messages
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.forms.admin import ToolServerForm
from conversations.models import BuiltinTool, ToolServer
from conversations.tools import mcp, registry


@admin.register(BuiltinTool)
class BuiltinToolAdmin(admin.ModelAdmin):
    list_display = ["__str__", "enabled", "approval"]
    list_editable = ["enabled", "approval"]
    list_display_links = ["__str__"]
    fields = ["name", "enabled", "approval", "allowed_hosts"]
    readonly_fields = ["name"]

    def has_add_permission(self, request):
        return False  # there are four, made on first use

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        BuiltinTool.load()
        return super().changelist_view(request, extra_context)


@admin.register(ToolServer)
class ToolServerAdmin(admin.ModelAdmin):
    form = ToolServerForm
    list_display = ["name", "url", "approval", "enabled", "tool_count", "refreshed", "status"]
    list_filter = ["enabled"]
    filter_horizontal = ["groups"]
    readonly_fields = ["tool_list", "refreshed", "error"]
    actions = ["refresh_tools"]

    @admin.display(description=_("tools"))
    def tool_count(self, server):
        return len(server.tools)

    @admin.display(description=_("answers"), boolean=True)
    def status(self, server):
        return None if server.refreshed is None else not server.error

    @admin.display(description=_("its tools, as models call them"))
    def tool_list(self, server):
        if not server.tools:
            return _("None listed yet: save, or use the “Test / refresh tools” action.")
        return format_html_join(
            "",
            "<p><code>{}</code> ({}): {}</p>",
            (
                (registry.mcp_name(server, tool["name"]), server.approval_of(tool["name"]),
                 tool.get("description", ""))
                for tool in server.tools
            ),
        )  # fmt: skip

    def save_model(self, request, server, form, change):
        super().save_model(request, server, form, change)
        self._refresh(request, [server])

    @admin.action(description=_("Test / refresh tools"))
    def refresh_tools(self, request, queryset):
        self._refresh(request, queryset)

    def _refresh(self, request, servers):
        for server in servers:
            if mcp.refresh(server):
                names = ", ".join(tool["name"] for tool in server.tools)
                self.message_user(
                    request,
                    ngettext(
                        "%(server)s answers with %(count)d tool: %(names)s.",
                        "%(server)s answers with %(count)d tools: %(names)s.",
                        len(server.tools),
                    )
                    % {"server": server, "count": len(server.tools), "names": names},
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, server.error, messages.ERROR)
