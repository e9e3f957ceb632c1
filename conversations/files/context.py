"""What a request gets of the files in scope (the conversation's, and its project's): whole
when they fit, else retrieval.

- **whole**: the files' text, all of it, in a system message after the system prompt, when it
  fits the model's context window with the system prompt, the new message and the reply's
  reserve (older messages may then be left out, as fit_context always does). The default,
  and what answers whole-document questions.
- **tools**: too large, and the model takes tools: a short note of the files, and the
  `search_files` and `read_passage` tools (conversations.files.tools), run as steps like any
  tool; the answer cites the passages those steps returned.
- **passages**: too large, and no tools: the passages that best match the user's message
  (conversations.files.search), as many as fit, numbered for the reply to cite.

The tokens it adds are part of the prompt: estimated, reserved under the user's quotas
before the provider is called, and counted in the ledger (conversations.generation).
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q

from conversations.files import search
from conversations.models import File, Project
from conversations.usage import estimate_prompt_tokens, estimate_tokens

# The names of the file tools (conversations.files.tools).
TOOLS = ("search_files", "read_passage")
# In a stored request, a whole-files message keeps the files' ids instead of their text:
# request_sent() puts it back.
STORED_FILES = "_files"


@dataclass
class Grounding:
    mode: str = "none"  # none, whole, tools or passages
    message: dict | None = None  # the system message to add, if any
    citations: list = field(default_factory=list)
    file_ids: list = field(default_factory=list)

    def stored(self):
        """The message as a reply's stored request keeps it."""
        if self.mode == "whole":
            return {"role": "system", "content": "", STORED_FILES: self.file_ids}
        return self.message


def in_scope(user, conversation):
    """The ready files a request in `conversation` may read: the conversation's own, and
    its project's while the user may use the project."""
    scope = Q(conversation=conversation)
    if (
        conversation.project_id
        and Project.objects.for_user(user).filter(id=conversation.project_id).exists()
    ):
        scope |= Q(project_id=conversation.project_id)
    return File.objects.ready().filter(scope).order_by("created")


def ground(files, model, messages, output_tokens, *, query, tools):
    """The part of `files` (those in scope: `in_scope`) in a request whose messages are
    `messages`; `tools`, whether the model may be offered the file tools in this request."""
    if not files:
        return Grounding()
    window = model.context_window or settings.CONFAB_FILE_CONTEXT_TOKENS
    system = [m for m in messages if m["role"] == "system"]
    least = estimate_prompt_tokens(system + messages[-1:]) + output_tokens
    whole = whole_message(files)
    if least + estimate_prompt_tokens([whole]) <= window:
        return Grounding("whole", whole, file_ids=[str(f.id) for f in files])
    if tools:
        return Grounding("tools", _tools_note(files), file_ids=[str(f.id) for f in files])
    return _passages(files, query, window - least - estimate_prompt_tokens(messages[:-1]))


def whole_message(files):
    parts = ["The user shared these files with you. Their whole text follows."]
    for file in files:
        pages = f' pages="{file.pages}"' if file.pages else ""
        parts.append(f'<file name="{file.name}"{pages}>\n{file.text()}\n</file>')
    return {"role": "system", "content": "\n\n".join(parts)}


def _tools_note(files):
    listed = "\n".join(
        f"- {f.name}" + (f" ({f.pages} pages)" if f.pages else "") + f", about {f.tokens} tokens"
        for f in files
    )
    return {
        "role": "system",
        "content": (
            "The user shared these files with you; they are too long to give you whole:\n"
            f"{listed}\n\nUse search_files to find the passages that answer the question, "
            "and read_passage to read one, or the next, in full. Say which file and page "
            "your answer comes from."
        ),
    }


def _passages(files, query, budget):
    """The best passages for `query` that fit `budget` tokens, numbered [1], [2]…"""
    names = {f.id: f.name for f in files}
    found = search.search([f.id for f in files], query, limit=settings.CONFAB_FILE_PASSAGES)
    header = (
        "Passages from the files the user shared, found for this question. Cite the ones "
        "you use by their numbers, as [1]."
    )
    blocks, citations, spent = [header], [], estimate_tokens(header) + 4
    for passage in found:
        n = len(citations) + 1
        where = f"{names[passage.file_id]}" + (f", page {passage.page}" if passage.page else "")
        block = f"[{n}] {where}:\n{passage.text.strip()}"
        if spent + estimate_tokens(block) > budget:
            break
        blocks.append(block)
        spent += estimate_tokens(block)
        citations.append(passage.citation(n, names[passage.file_id]))
    if not citations:
        note = "The user shared files, but no passage of them matches this message."
        return Grounding("passages", {"role": "system", "content": note})
    message = {"role": "system", "content": "\n\n".join(blocks)}
    return Grounding("passages", message, citations, [str(f.id) for f in files])


def restored(message):
    """A stored request's message, with the whole files' text back in it."""
    if STORED_FILES not in message:
        return message
    files = list(File.objects.filter(id__in=message[STORED_FILES]).order_by("created"))
    return whole_message(files)


def turn_citations(messages):
    """The passages the tool messages among `messages` returned, each once, numbered."""
    seen, citations = set(), []
    for message in messages:
        for cited in message.citations:
            key = (cited["file"], cited["passage"])
            if key not in seen:
                seen.add(key)
                citations.append({**cited, "n": len(citations) + 1})
    return citations
