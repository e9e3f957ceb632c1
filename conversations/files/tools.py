"""The file tools, offered (automatically) to a model with tools when the files in scope are
too long to send whole (conversations.files.context): search the files, read a passage.
They run as steps of the agent loop like any tool, read only what the conversation may, and
return the passages they show, which the answer then cites."""

from channels.db import database_sync_to_async

from conversations.files import context as file_context
from conversations.files import embeddings, search
from conversations.models import Conversation
from conversations.tools.builtins import ToolFailed

HITS = 5


def _files(context):
    conversation = (
        Conversation.objects.for_user(context.user).filter(id=context.conversation_id).first()
    )
    if conversation is None:
        raise ToolFailed("This conversation has no files.")
    return list(file_context.in_scope(context.user, conversation))


def _label(passage, name):
    page = f", page {passage.page}" if passage.page else ""
    return f"{name} #{passage.ordinal}{page}"


async def search_files(arguments, context):
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolFailed("Give the words to look for as `query`.")
    files = await database_sync_to_async(_files)(context)
    vector = None
    if any(f.embedded for f in files):  # ranked by meaning too (files.embeddings)
        vector = await embeddings.query_vector(query, context.user.pk)
    return await database_sync_to_async(_search)(files, query, vector)


def _search(files, query, vector):
    names = {f.id: f.name for f in files}
    found = search.search(names, query, limit=HITS, vector=vector)
    if not found:
        return f"No passage of {', '.join(names.values())} matches {query!r}.", []
    blocks = [f"[{_label(p, names[p.file_id])}]\n{p.text.strip()}" for p in found]
    citations = [p.citation(i + 1, names[p.file_id]) for i, p in enumerate(found)]
    return "\n\n".join(blocks), citations


@database_sync_to_async
def read_passage(arguments, context):
    wanted, number = arguments.get("file"), arguments.get("passage")
    if not isinstance(wanted, str) or not isinstance(number, int) or isinstance(number, bool):
        raise ToolFailed("Give the file's name as `file` and the passage's number as `passage`.")
    files = _files(context)
    file = next((f for f in files if wanted in (f.name, str(f.id))), None)
    if file is None:
        listed = ", ".join(f.name for f in files)
        raise ToolFailed(f"There is no file named {wanted!r}. The files are: {listed}.")
    passage = file.passages.filter(ordinal=number).first()
    if passage is None:
        last = file.passages.count() - 1
        raise ToolFailed(f"{file.name} has passages 0 to {last}.")
    text = f"[{_label(passage, file.name)}]\n{passage.text.strip()}"
    if file.passages.filter(ordinal=number + 1).exists():
        text += f"\n\n(The next passage is #{number + 1}.)"
    return text, [passage.citation(1, file.name)]


# name → (function, description, JSON schema of its parameters)
FILE_TOOLS = {
    "search_files": (
        search_files,
        "Search the files the user shared for words; returns the best passages, each "
        "labelled with its file, number and page.",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    ),
    "read_passage": (
        read_passage,
        "Read one passage of a shared file in full, by the file's name and the passage's "
        "number (as search_files labels them).",
        {
            "type": "object",
            "properties": {"file": {"type": "string"}, "passage": {"type": "integer"}},
            "required": ["file", "passage"],
        },
    ),
}
