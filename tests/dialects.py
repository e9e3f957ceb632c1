"""A corpus of provider stream dialects: how OpenAI-compatible servers really stream.

Each `Case` is one behaviour that differs from OpenAI's own Chat Completions stream, played
by the fake upstream (`tests/fake_upstream.py`) byte for byte, together with the reply that
Confab must store from it (`Expected`). The survey behind it, with a source for every
behaviour and the ids used in `Case.behaviour`, is in docs/providers.md ("Every provider's
stream, surveyed").

The streams are shaped like each provider's real ones (field names, extra fields, where
usage and finish reasons sit, how errors and the end of the stream look), but the text, ids
and token counts are our own. A script is a tuple of steps, as the fake upstream plays them:
bytes are one write, a float is seconds to wait, `CLOSE` closes the connection.

How `Expected` is written (the rules the app follows):

- content is the joined `delta.content` strings, exactly as sent (`<think>` tags included);
  reasoning is what a provider marks as reasoning: `reasoning_content`, `reasoning`,
  `reasoning_details` text parts, or a content list part of type "thinking";
- unknown fields are ignored;
- tool calls are grouped by `index`; without an index, or when every call says index 0,
  a new non-empty `id` starts a new call; id and name are taken once, arguments joined;
  arguments sent as a JSON object are stored as `json.dumps(obj)`;
- usage is read wherever the provider puts it, the last one wins, and `usage` is
  `(prompt, completion, total, cached, reasoning)` or None when none was reported;
- `finish_reason` is the provider's last non-empty value, unchanged;
- status: an error event or an HTTP error fails the reply, keeping the text so far, and so
  does a finish reason that says the provider failed (`network_error`,
  `insufficient_system_resource`, `abort`, `error`); a stream that ends with another finish
  reason, or at `[DONE]`, is complete; one that ends with neither `[DONE]` nor a finish
  reason is interrupted ("closed the connection before the reply was finished").

This module holds data only: tests/test_dialects.py plays it.
"""

import gzip
import json
from dataclasses import dataclass

from tests.fake_upstream import CLOSE, sse, stream_headers


@dataclass(frozen=True)
class Expected:
    status: str  # "complete" | "failed" | "interrupted"
    content: str = ""
    reasoning: str = ""
    tool_calls: tuple = ()  # each {"id", "type": "function", "function": {"name", "arguments"}}
    finish_reason: str = ""  # as stored: the provider's value, unchanged
    usage: tuple | None = None  # (prompt, completion, total, cached, reasoning) or None
    error: str = ""  # a substring the stored error must contain (empty when none)


@dataclass(frozen=True)
class Case:
    name: str
    providers: tuple
    behaviour: str  # one line: what differs from OpenAI (starts with the behaviour ids)
    source: str  # URL(s), space separated
    steps: tuple
    expected: Expected


# --- tiny helpers -------------------------------------------------------------------------

DONE = sse("[DONE]")
CREATED = 1767225600  # 2026-01-01T00:00:00Z


def body(
    choices,
    *,
    id="chatcmpl-dialect",
    model="dialect-model",
    obj="chat.completion.chunk",
    created=CREATED,
    **extra,
):
    """A chunk in the usual field order; `extra` adds (or, as None, nulls) top-level fields."""
    payload = {"id": id, "object": obj, "created": created, "model": model, "choices": choices}
    payload.update(extra)
    return payload


def choice(delta=None, finish_reason=None, index=0, **extra):
    out = {"index": index, "delta": {} if delta is None else delta, "finish_reason": finish_reason}
    out.update(extra)
    return out


def usage(prompt, completion, total=None, **extra):
    total = prompt + completion if total is None else total
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        **extra,
    }


def tool(index=None, id=None, name=None, arguments=None, type="function", **extra):
    """One `delta.tool_calls` entry; an argument left as None is left out of the entry."""
    out = {}
    if index is not None:
        out["index"] = index
    if id is not None:
        out["id"] = id
    if type is not None:
        out["type"] = type
    function = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function or name is not None or arguments is not None:
        out["function"] = function
    out.update(extra)
    return out


def call(id, name, arguments):
    """One stored tool call, as `Expected.tool_calls` holds it."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def compact(payload):
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def response_head(status=200, content_type="text/event-stream", *extra_headers):
    reason = "OK" if status == 200 else "Error"
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}"]
    lines += [*extra_headers, "Cache-Control: no-cache", "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def json_response(status, payload):
    data = json.dumps(payload).encode()
    return response_head(status, "application/json", f"Content-Length: {len(data)}") + data


def halves(data, parts=2):
    """`data` cut into `parts` network writes of about equal size."""
    size = -(-len(data) // parts)
    return tuple(data[i : i + size] for i in range(0, len(data), size))


# --- shapes shared by several cases ----------------------------------------------------------

SAFE = {"filtered": False, "severity": "safe"}
AZURE_FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
OPENROUTER_PROCESSING = b": OPENROUTER PROCESSING\n\n"
SSE_ERROR_BODY = (
    b'event: error\ndata: {"code":"quota_exhausted","message":"Relay quota used up"}\n\n'
)

# One reasoning chunk of about 220 KB on a single SSE line: more than aiohttp's default
# 128 KiB line limit (`readuntil`), as OpenRouter relays it from some upstreams.
HUGE_REASONING = "".join(f"Step {i}: the clause still holds. " for i in range(6500))
HUGE_LINE = sse(
    body(
        [choice({"role": "assistant", "content": "", "reasoning": HUGE_REASONING})],
        id="gen-1767225600-HugeLine01",
        model="moonshotai/kimi-k2.6",
        provider="Novita",
    )
)

GZIP_STREAM = gzip.compress(
    b"".join(
        [
            sse(body([choice({"role": "assistant", "content": ""})], id="msg_gz01")),
            sse(body([choice({"content": "Compressed"})], id="msg_gz01")),
            sse(body([choice({"content": " on the wire."})], id="msg_gz01")),
            sse(body([choice(finish_reason="stop")], id="msg_gz01")),
            sse(body([], id="msg_gz01", usage=usage(14, 4))),
            DONE,
        ]
    )
)


def crlf(payload):
    """An event framed with CRLF line endings (sse-starlette's default separator)."""
    data = payload if isinstance(payload, str) else compact(payload)
    return f"data: {data}\r\n\r\n".encode()


def no_space(payload):
    """An event written as `data:{...}`, without the optional space after the colon."""
    data = payload if isinstance(payload, str) else compact(payload)
    return f"data:{data}\n\n".encode()


# --- the corpus -----------------------------------------------------------------------------

_DS = {"id": "5f3d0c1e-2b7a-4c52-9d0e-7a1b2c3d4e5f", "model": "deepseek-reasoner"}
_DS_EXTRA = {"system_fingerprint": "fp_dialect_prod0820", "usage": None}
_KIMI = {"id": "chatcmpl-69a1f0c2e4d5b6a7c8d9e0f1", "model": "kimi-k2-thinking"}
_MM = {"id": "05c8a1f0e3d2b1a09876", "model": "MiniMax-M2.7"}
_MM_DELTA = {"name": "MiniMax AI", "audio_content": ""}
_MM_FLAGS = {"input_sensitive": False, "output_sensitive": False}
_GROQ = {"id": "chatcmpl-7e1c9a30-0f4b-4d2e-9b6a-5c8d7e6f1a2b", "model": "llama-3.3-70b-versatile"}
_PPLX = {"id": "2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3c4d", "model": "sonar-pro"}
_PPLX_SOURCES = {
    "citations": ["https://example.org/tides", "https://example.net/moon"],
    "search_results": [{"title": "Tides", "url": "https://example.org/tides", "date": None}],
}


def _pplx(delta, so_far, completion, finish_reason=None):
    cost = {
        "input_tokens_cost": 0.0,
        "output_tokens_cost": 0.0,
        "request_cost": 0.006,
        "total_cost": 0.006,
    }
    return sse(
        body(
            [
                choice(
                    delta,
                    finish_reason,
                    message={"role": "assistant", "content": so_far},
                )
            ],
            **_PPLX,
            **_PPLX_SOURCES,
            usage=usage(8, completion, search_context_size="low", cost=cost),
        )
    )


def _together(text, token_id, finish_reason=None, usage_=None):
    return sse(
        body(
            [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "seed": None,
                    "delta": {
                        "token_id": token_id,
                        "role": "assistant",
                        "content": text,
                        "tool_calls": None,
                    },
                }
            ],
            id="8f2a6b4c1d3e5f70-ATH",
            model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
            usage=usage_,
        )
    )


def _sglang(tool_calls=None, content=None, finish_reason=None):
    delta = {"role": None, "content": content, "reasoning_content": None, "tool_calls": tool_calls}
    return sse(
        body(
            [choice(delta, finish_reason, logprobs=None, matched_stop=None)],
            id="b1f4c3a2d5e64f7a8b9c0d1e2f3a4b5c",
            model="Qwen/Qwen3-32B",
            usage=None,
        )
    )


def _dashscope(choices, **extra):
    return sse(
        {
            "choices": choices,
            "object": "chat.completion.chunk",
            "usage": None,
            "created": CREATED,
            "system_fingerprint": None,
            "model": "qwen-plus",
            "id": "chatcmpl-6b9f079d-c440-9fc5-bb6a-963ad8387e02",
            **extra,
        }
    )


def _llamacpp(delta, finish_reason=None, n=1):
    timings = {"prompt_n": 41, "prompt_ms": 120.5, "predicted_n": n, "predicted_ms": 14.2 * n}
    return sse(
        body(
            [choice(delta, finish_reason)],
            id="chatcmpl-Qk2h7PzR4mYv9Lw1Xc3b",
            model="gpt-oss-20b-Q4_K_M.gguf",
            system_fingerprint="b6102-4a5b6c7",
            timings=timings,
        )
    )


def _azure(choices, **extra):
    return sse(
        body(
            choices,
            id="chatcmpl-AzDialect01",
            model="gpt-4o-2024-11-20",
            system_fingerprint="fp_az01",
            **extra,
        )
    )


def _ollama(delta, finish_reason=None):
    return sse(
        body(
            [choice({"role": "assistant", **delta}, finish_reason)],
            id="chatcmpl-417",
            model="qwen3:8b",
            system_fingerprint="fp_ollama",
        )
    )


CASES = [
    # ---- text and reasoning ----
    Case(
        name="deepseek_reasoning_content_usage_on_finish_chunk",
        providers=("DeepSeek", "Qwen/DashScope", "Moonshot/Kimi", "Zhipu GLM", "xAI"),
        behaviour=(
            "D01 D17 D21: reasoning in delta.reasoning_content (first one empty, content null "
            "meanwhile); usage rides on the finish chunk, cache hits as prompt_cache_hit_tokens "
            "with prompt_tokens_details null"
        ),
        source=(
            "https://github.com/adolfousier/opencrabs/issues/1128 "
            "https://github.com/brainlid/langchain/pull/288 "
            "https://github.com/BerriAI/litellm/pull/18485"
        ),
        steps=(
            stream_headers(),
            sse(
                body(
                    [choice({"role": "assistant", "content": None, "reasoning_content": ""})],
                    **_DS,
                    **_DS_EXTRA,
                )
            ),
            sse(
                body(
                    [choice({"content": None, "reasoning_content": "Compare the tenths:"})],
                    **_DS,
                    **_DS_EXTRA,
                )
            ),
            sse(
                body(
                    [choice({"content": None, "reasoning_content": " 8 beats 1."})],
                    **_DS,
                    **_DS_EXTRA,
                )
            ),
            sse(body([choice({"content": "9.8", "reasoning_content": None})], **_DS, **_DS_EXTRA)),
            sse(
                body(
                    [choice({"content": " is larger.", "reasoning_content": None})],
                    **_DS,
                    **_DS_EXTRA,
                )
            ),
            sse(
                body(
                    [choice({"content": ""}, "stop", logprobs=None)],
                    **_DS,
                    system_fingerprint="fp_dialect_prod0820",
                    usage=usage(
                        12,
                        38,
                        prompt_tokens_details=None,
                        prompt_cache_hit_tokens=8,
                        prompt_cache_miss_tokens=4,
                        completion_tokens_details={"reasoning_tokens": 27},
                    ),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="9.8 is larger.",
            reasoning="Compare the tenths: 8 beats 1.",
            finish_reason="stop",
            usage=(12, 38, 50, 8, 27),
        ),
    ),
    Case(
        name="ollama_reasoning_field_role_on_every_delta",
        providers=("Ollama (/v1)", "OpenRouter", "Groq", "Together", "LM Studio"),
        behaviour=(
            "D02 D46: reasoning in delta.reasoning (not reasoning_content); every delta repeats "
            'role "assistant" and sends content "" while reasoning'
        ),
        source=(
            "https://github.com/ollama/ollama/blob/main/openai/openai.go "
            "https://github.com/ollama/ollama/blob/main/middleware/openai.go "
            "https://github.com/anomalyco/opencode/issues/46061"
        ),
        steps=(
            stream_headers(),
            _ollama({"content": "", "reasoning": "The user greets me."}),
            _ollama({"content": "", "reasoning": " A short reply fits."}),
            _ollama({"content": "Hello"}),
            _ollama({"content": " there!"}),
            _ollama({"content": ""}, "stop"),
            sse(
                body(
                    [],
                    id="chatcmpl-417",
                    model="qwen3:8b",
                    system_fingerprint="fp_ollama",
                    usage=usage(31, 19),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Hello there!",
            reasoning="The user greets me. A short reply fits.",
            finish_reason="stop",
            usage=(31, 19, 50, 0, 0),
        ),
    ),
    Case(
        name="openrouter_reasoning_and_reasoning_details_same_text",
        providers=("OpenRouter", "Vercel AI Gateway"),
        behaviour=(
            "D03 D39 D23: each reasoning delta carries the same text twice, in `reasoning` and "
            "in a reasoning_details part of type reasoning.text (stored once: assumed); "
            "`: OPENROUTER PROCESSING` comments first; native_finish_reason, provider and "
            "usage.cost are extra"
        ),
        source=(
            "https://openrouter.ai/docs/api-reference/streaming "
            "https://openrouter.ai/docs/agent-sdk/typescript/api-reference/models/chatstreamdelta "
            "https://git.secluded.site/fantasy-mirror/blob/v0.14.0/providertests/testdata/"
            "TestVercelThinking/claude-sonnet-4/thinking-streaming.yaml"
        ),
        steps=(
            stream_headers(),
            OPENROUTER_PROCESSING,
            0.05,
            OPENROUTER_PROCESSING,
            *(
                sse(
                    body(
                        [
                            choice(
                                {
                                    "role": "assistant",
                                    "content": "",
                                    "reasoning": part,
                                    "reasoning_details": [
                                        {
                                            "type": "reasoning.text",
                                            "text": part,
                                            "format": "anthropic-claude-v1",
                                            "index": 0,
                                        }
                                    ],
                                }
                            )
                        ],
                        id="gen-1767225600-OrDetails1",
                        model="anthropic/claude-sonnet-4",
                        provider="Anthropic",
                    )
                )
                for part in ("Rain means", " an umbrella.")
            ),
            *(
                sse(
                    body(
                        [choice({"role": "assistant", "content": part})],
                        id="gen-1767225600-OrDetails1",
                        model="anthropic/claude-sonnet-4",
                        provider="Anthropic",
                    )
                )
                for part in ("Take", " an umbrella.")
            ),
            sse(
                body(
                    [
                        choice(
                            {"role": "assistant", "content": ""},
                            "stop",
                            native_finish_reason="end_turn",
                        )
                    ],
                    id="gen-1767225600-OrDetails1",
                    model="anthropic/claude-sonnet-4",
                    provider="Anthropic",
                )
            ),
            sse(
                body(
                    [],
                    id="gen-1767225600-OrDetails1",
                    model="anthropic/claude-sonnet-4",
                    provider="Anthropic",
                    usage=usage(
                        40,
                        25,
                        cost=0.000495,
                        is_byok=False,
                        prompt_tokens_details={"cached_tokens": 0},
                        completion_tokens_details={"reasoning_tokens": 12},
                    ),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Take an umbrella.",
            reasoning="Rain means an umbrella.",
            finish_reason="stop",
            usage=(40, 25, 65, 0, 12),
        ),
    ),
    Case(
        name="minimax_reasoning_details_only",
        providers=("MiniMax",),
        behaviour=(
            "D03: with reasoning_split the reasoning arrives only as reasoning_details parts of "
            "type reasoning.text; deltas carry name and audio_content; usage comes last in a "
            "chunk with empty choices"
        ),
        source=(
            "https://github.com/vellum-ai/vellum-assistant/pull/34556 "
            "https://github.com/BerriAI/litellm/pull/27483 "
            "https://github.com/mozilla-ai/any-llm/issues/1185"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [
                            choice(
                                {
                                    "role": "assistant",
                                    **_MM_DELTA,
                                    "reasoning_details": [
                                        {
                                            "type": "reasoning.text",
                                            "id": "reasoning-text-1",
                                            "format": "MiniMax-response-v1",
                                            "index": 0,
                                            "text": part,
                                        }
                                    ],
                                }
                            )
                        ],
                        **_MM,
                        **_MM_FLAGS,
                    )
                )
                for part in ("Count the legs:", " a spider has eight.")
            ),
            sse(
                body(
                    [choice({"role": "assistant", **_MM_DELTA, "content": "Eight legs."})],
                    **_MM,
                    **_MM_FLAGS,
                )
            ),
            sse(body([choice({}, "stop")], **_MM, **_MM_FLAGS)),
            sse(body([], **_MM, usage=usage(25, 18))),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Eight legs.",
            reasoning="Count the legs: a spider has eight.",
            finish_reason="stop",
            usage=(25, 18, 43, 0, 0),
        ),
    ),
    Case(
        name="minimax_think_tags_inside_content",
        providers=("MiniMax", "Fireworks", "Groq", "vLLM", "LM Studio", "Perplexity"),
        behaviour=(
            "D04 D46: reasoning inline in content as <think>...</think>, the opening tag split "
            'across two chunks; role "" on every delta (content kept as sent)'
        ),
        source=(
            "https://github.com/MiniMax-AI/MiniMax-M2/issues/105 "
            "https://github.com/MiniMax-AI/MiniMax-M2.5/issues/2 "
            "https://github.com/AstrBotDevs/AstrBot/pull/7314 "
            "https://github.com/BerriAI/litellm/issues/26326"
        ),
        steps=(
            stream_headers(),
            *(
                sse(body([choice({"role": "", **_MM_DELTA, "content": part})], **_MM, **_MM_FLAGS))
                for part in (
                    "<thi",
                    "nk>\nThe user",
                    " says hi.\n</think>\n\n",
                    "Hi! How can I help?",
                )
            ),
            sse(body([choice({"role": "", "content": ""}, "stop")], **_MM, **_MM_FLAGS)),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="<think>\nThe user says hi.\n</think>\n\nHi! How can I help?",
            finish_reason="stop",
        ),
    ),
    Case(
        name="minimax_final_chat_completion_frame",
        providers=("MiniMax",),
        behaviour=(
            'D19 D47: chunks carry usage placeholders {"total_tokens": 0}; the last frame is an '
            'object "chat.completion" whose choice has the whole message (not a delta), the '
            "finish reason and the only real usage"
        ),
        source=(
            "https://github.com/GCWing/OpenBitFun/pull/792 "
            "https://github.com/ENTERPILOT/GoModel/pull/1068 "
            "https://github.com/songquanpeng/one-api/issues/1394"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice({"role": "assistant", **_MM_DELTA, "content": part})],
                        **_MM,
                        usage={"total_tokens": 0},
                        **_MM_FLAGS,
                    )
                )
                for part in ("Paris is", " the capital.")
            ),
            sse(
                body(
                    [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "name": "MiniMax AI",
                                "content": "Paris is the capital.",
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    obj="chat.completion",
                    **_MM,
                    usage=usage(40, 22, prompt_tokens_details={"cached_tokens": 32}),
                    **_MM_FLAGS,
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Paris is the capital.",
            finish_reason="stop",
            usage=(40, 22, 62, 32, 0),
        ),
    ),
    Case(
        name="magistral_thinking_content_parts",
        providers=("Mistral",),
        behaviour=(
            'D05: Magistral streams reasoning as delta.content lists of {"type": "thinking", '
            '"thinking": [{"type": "text", ...}]}; the answer follows as plain strings (assumed)'
        ),
        source=(
            "https://github.com/BerriAI/litellm/issues/16272 "
            "https://github.com/vercel/ai/pull/8072 "
            "https://github.com/Arize-ai/openinference/pull/3761"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta)],
                        id="c3c77283055240cbbaf6f01d384cfccb",
                        model="magistral-medium-2509",
                    )
                )
                for delta in (
                    {"role": "assistant", "content": ""},
                    {"content": ""},
                    {
                        "content": [
                            {
                                "type": "thinking",
                                "thinking": [{"type": "text", "text": "Two plus two"}],
                            }
                        ]
                    },
                    {
                        "content": [
                            {
                                "type": "thinking",
                                "thinking": [{"type": "text", "text": " is four."}],
                            }
                        ]
                    },
                    {"content": "The answer"},
                    {"content": " is 4."},
                )
            ),
            sse(
                body(
                    [choice({"content": ""}, "stop")],
                    id="c3c77283055240cbbaf6f01d384cfccb",
                    model="magistral-medium-2509",
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="The answer is 4.",
            reasoning="Two plus two is four.",
            finish_reason="stop",
        ),
    ),
    Case(
        name="litellm_anthropic_reasoning_plus_thinking_blocks",
        providers=("LiteLLM relaying Anthropic",),
        behaviour=(
            "D06: each reasoning delta also repeats its text in thinking_blocks (and "
            'provider_specific_fields), with content ""; the signature comes in a block '
            "with empty text (reasoning stored once, from reasoning_content)"
        ),
        source=(
            "https://github.com/BerriAI/litellm/issues/8964 "
            "https://github.com/BerriAI/litellm/issues/10328"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [
                            choice(
                                {
                                    "reasoning_content": part,
                                    "thinking_blocks": blocks,
                                    "provider_specific_fields": {"thinking_blocks": blocks},
                                    "content": "",
                                    "role": "assistant",
                                }
                            )
                        ],
                        id="chatcmpl-4b8e2f1a-9c3d-4e5f-a6b7-c8d9e0f1a2b3",
                        model="claude-sonnet-4-20250514",
                    )
                )
                for part, blocks in (
                    (
                        "The user said hi;",
                        [{"type": "thinking", "thinking": "The user said hi;", "signature": None}],
                    ),
                    (
                        " greet back.",
                        [{"type": "thinking", "thinking": " greet back.", "signature": None}],
                    ),
                    ("", [{"type": "thinking", "thinking": "", "signature": "EqQBCkYIBxgCKkB0"}]),
                )
            ),
            *(
                sse(
                    body(
                        [choice({"content": part})],
                        id="chatcmpl-4b8e2f1a-9c3d-4e5f-a6b7-c8d9e0f1a2b3",
                        model="claude-sonnet-4-20250514",
                    )
                )
                for part in ("Hello", "!")
            ),
            sse(
                body(
                    [choice({}, "stop")],
                    id="chatcmpl-4b8e2f1a-9c3d-4e5f-a6b7-c8d9e0f1a2b3",
                    model="claude-sonnet-4-20250514",
                )
            ),
            sse(
                body(
                    [],
                    id="chatcmpl-4b8e2f1a-9c3d-4e5f-a6b7-c8d9e0f1a2b3",
                    model="claude-sonnet-4-20250514",
                    usage=usage(
                        21,
                        48,
                        prompt_tokens_details={"cached_tokens": 0},
                        completion_tokens_details={"reasoning_tokens": 30},
                        cache_creation_input_tokens=0,
                        cache_read_input_tokens=0,
                    ),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Hello!",
            reasoning="The user said hi; greet back.",
            finish_reason="stop",
            usage=(21, 48, 69, 0, 30),
        ),
    ),
    Case(
        name="kimi_tool_call_tokens_leak_into_reasoning",
        providers=("Moonshot/Kimi",),
        behaviour=(
            "D07 D15: kimi-k2-thinking sometimes writes its tool call as raw special tokens "
            "inside reasoning_content and sends no tool_calls (stored as reasoning, no call); "
            "usage inside the finishing choice"
        ),
        source=(
            "https://github.com/MoonshotAI/Kimi-K2/issues/89 "
            "https://github.com/vybestack/llxprt-code/issues/749"
        ),
        steps=(
            stream_headers(),
            sse(body([choice({"role": "assistant", "content": ""})], **_KIMI)),
            sse(body([choice({"reasoning_content": "I should look the weather up. "})], **_KIMI)),
            sse(
                body(
                    [
                        choice(
                            {
                                "reasoning_content": "<|tool_calls_section_begin|> "
                                "<|tool_call_begin|> functions.get_weather:0 "
                                '<|tool_call_argument_begin|> {"city": "Beijing"} '
                                "<|tool_call_end|> <|tool_calls_section_end|>"
                            }
                        )
                    ],
                    **_KIMI,
                )
            ),
            sse(body([choice({}, "stop", usage=usage(64, 41))], **_KIMI)),
            DONE,
        ),
        expected=Expected(
            status="complete",
            reasoning="I should look the weather up. <|tool_calls_section_begin|> "
            "<|tool_call_begin|> functions.get_weather:0 "
            '<|tool_call_argument_begin|> {"city": "Beijing"} '
            "<|tool_call_end|> <|tool_calls_section_end|>",
            finish_reason="stop",
            usage=(64, 41, 105, 0, 0),
        ),
    ),
    # ---- tool calls ----
    Case(
        name="mistral_two_whole_calls_in_one_chunk",
        providers=("Mistral", "Groq", "xAI", "Ollama (/v1)"),
        behaviour=(
            "D12 D44: every tool call arrives whole in one chunk (two calls in one delta, "
            "indices 0 and 1, 9-character ids); the first chunk has no object or created"
        ),
        source=(
            "https://github.com/microsoft/semantic-kernel/issues/6316 "
            "https://github.com/comet-ml/opik/pull/7385 "
            "https://github.com/mistralai/client-python/issues/16"
        ),
        steps=(
            stream_headers(),
            sse(
                {
                    "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
                    "model": "mistral-large-latest",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            ),
            sse(
                body(
                    [
                        choice(
                            {
                                "tool_calls": [
                                    tool(0, "D681PevKs", "get_weather", '{"city": "Paris"}'),
                                    tool(1, "A9xQ2mVz1", "get_weather", '{"city": "Lyon"}'),
                                ]
                            }
                        )
                    ],
                    id="cmpl-e5cc70bb28c444948073e77776eb30ef",
                    model="mistral-large-latest",
                )
            ),
            sse(
                body(
                    [choice({"content": ""}, "tool_calls")],
                    id="cmpl-e5cc70bb28c444948073e77776eb30ef",
                    model="mistral-large-latest",
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call("D681PevKs", "get_weather", '{"city": "Paris"}'),
                call("A9xQ2mVz1", "get_weather", '{"city": "Lyon"}'),
            ),
            finish_reason="tool_calls",
        ),
    ),
    Case(
        name="gemini_indexless_tool_calls_finish_stop",
        providers=("Gemini (OpenAI compatibility)", "Ollama (/v1, older)"),
        behaviour=(
            "D08 D14 D44: tool calls without index; the first call's arguments continue in an "
            "indexless delta with no id; a metadata-only delta (thought_signature); the "
            'stream ends with finish_reason "stop", not "tool_calls"; chunks lack id/created'
        ),
        source=(
            "https://github.com/open-webui/computer/issues/224 "
            "https://github.com/THU-MAIC/OpenMAIC/issues/1556 "
            "https://github.com/googleapis/python-genai/issues/2868 "
            "https://github.com/ollama/ollama/issues/7881"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    {
                        "choices": [{"delta": delta, "index": 0}],
                        "model": "gemini-3-flash",
                        "object": "chat.completion.chunk",
                    }
                )
                for delta in (
                    {
                        "role": "assistant",
                        "tool_calls": [
                            tool(
                                None,
                                "function-call-1",
                                "get_weather",
                                '{"location":',
                                extra_content={"google": {"thought_signature": "c2lnLTAx"}},
                            )
                        ],
                    },
                    {"tool_calls": [tool(None, None, None, '"Sydney"}', type=None)]},
                    {"tool_calls": [tool(None, "function-call-2", "get_time", "{}")]},
                    {"tool_calls": [{"extra_content": {"google": {"thought_signature": "c2ln"}}}]},
                )
            ),
            sse(
                {
                    "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}],
                    "model": "gemini-3-flash",
                    "object": "chat.completion.chunk",
                    "usage": usage(52, 19),
                }
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call("function-call-1", "get_weather", '{"location":"Sydney"}'),
                call("function-call-2", "get_time", "{}"),
            ),
            finish_reason="stop",
            usage=(52, 19, 71, 0, 0),
        ),
    ),
    Case(
        name="vllm_parallel_calls_all_index_zero",
        providers=("vLLM", "one-api/new-api (Gemini channel)"),
        behaviour=(
            "D09: two calls both sent with index 0; each starts with its own id and name, "
            'its argument fragments carry id ""'
        ),
        source=(
            "https://github.com/InternLM/lmdeploy/issues/3412 "
            "https://github.com/QuantumNous/new-api/pull/2701 "
            "https://github.com/dyedd/lens/issues/49"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, logprobs=None)],
                        id="chatcmpl-0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a",
                        model="Qwen/Qwen2.5-72B-Instruct",
                    )
                )
                for delta in (
                    {"role": "assistant", "content": ""},
                    {"tool_calls": [tool(0, "chatcmpl-tool-c9ZCzB9b", "get_weather", "")]},
                    {"tool_calls": [tool(0, "", None, '{"city": "Oslo"}', type=None)]},
                    {"tool_calls": [tool(0, "chatcmpl-tool-HfzZPEVf", "get_weather", "")]},
                    {"tool_calls": [tool(0, "", None, '{"city": "Bergen"}', type=None)]},
                )
            ),
            sse(
                body(
                    [choice({}, "tool_calls", logprobs=None)],
                    id="chatcmpl-0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a",
                    model="Qwen/Qwen2.5-72B-Instruct",
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call("chatcmpl-tool-c9ZCzB9b", "get_weather", '{"city": "Oslo"}'),
                call("chatcmpl-tool-HfzZPEVf", "get_weather", '{"city": "Bergen"}'),
            ),
            finish_reason="tool_calls",
        ),
    ),
    Case(
        name="sglang_ids_repeated_on_every_fragment",
        providers=("SGLang",),
        behaviour=(
            'D10: both calls use index 0 and repeat their id ("0", "1") on every fragment; '
            "deltas carry role/content/reasoning_content as null and a matched_stop field"
        ),
        source=(
            "https://github.com/InternLM/lmdeploy/issues/3412 "
            "https://github.com/sgl-project/sglang/issues/6310"
        ),
        steps=(
            stream_headers(),
            _sglang([tool(0, "0", "get_time", "")]),
            _sglang([tool(0, "0", None, '{"zone": "UTC"}')]),
            _sglang([tool(0, "1", "get_time", "")]),
            _sglang([tool(0, "1", None, '{"zone": "CET"}')]),
            _sglang(None, None, "tool_calls"),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call("0", "get_time", '{"zone": "UTC"}'),
                call("1", "get_time", '{"zone": "CET"}'),
            ),
            finish_reason="tool_calls",
        ),
    ),
    Case(
        name="dashscope_fragments_with_empty_id_and_empty_function",
        providers=("Qwen/DashScope (compatible mode)",),
        behaviour=(
            'D11: later fragments repeat type and send id ""; one fragment is an empty '
            '"function": {}; one choice has no finish_reason key; usage only with '
            "include_usage, in a last chunk with empty choices"
        ),
        source=(
            "https://bioinfo.online/articleList/2026161174.html "
            "https://www.itsvse.com/forum.php?goto=lastpost&mod=redirect&tid=10981 "
            "https://www.alibabacloud.com/help/en/model-studio/stream"
        ),
        steps=(
            stream_headers(),
            _dashscope(
                [
                    {
                        "delta": {
                            "content": None,
                            "tool_calls": [
                                tool(
                                    0,
                                    "call_0bdcc155f2534f65a05cb1",
                                    "get_current_weather",
                                    '{"location":',
                                )
                            ],
                            "role": "assistant",
                        },
                        "finish_reason": None,
                        "index": 0,
                        "logprobs": None,
                    }
                ]
            ),
            _dashscope(
                [
                    {
                        "delta": {
                            "tool_calls": [
                                {
                                    "function": {"arguments": ' "Hangzhou"}'},
                                    "index": 0,
                                    "id": "",
                                    "type": "function",
                                }
                            ]
                        },
                        "index": 0,
                    }
                ]
            ),
            _dashscope(
                [
                    {
                        "delta": {
                            "tool_calls": [
                                {"function": {}, "index": 0, "id": "", "type": "function"}
                            ]
                        },
                        "finish_reason": None,
                        "index": 0,
                        "logprobs": None,
                    }
                ]
            ),
            _dashscope(
                [{"finish_reason": "tool_calls", "delta": {}, "index": 0, "logprobs": None}]
            ),
            _dashscope([], usage=usage(280, 22, prompt_tokens_details={"cached_tokens": 0})),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call(
                    "call_0bdcc155f2534f65a05cb1", "get_current_weather", '{"location": "Hangzhou"}'
                ),
            ),
            finish_reason="tool_calls",
            usage=(280, 22, 302, 0, 0),
        ),
    ),
    Case(
        name="llamacpp_arguments_as_json_object",
        providers=("llama.cpp server",),
        behaviour=(
            "D13: function.arguments sent as a JSON object, not a string (stored as "
            "json.dumps(obj) with default separators; streaming shape assumed like the reported "
            "one)"
        ),
        source="https://github.com/ggml-org/llama.cpp/issues/20198",
        steps=(
            stream_headers(),
            _llamacpp({"role": "assistant", "content": None}),
            _llamacpp(
                {
                    "tool_calls": [
                        tool(0, "call_x7KqP2", "get_weather", {"city": "Oslo", "unit": "celsius"})
                    ]
                },
                n=9,
            ),
            _llamacpp({}, "tool_calls", n=10),
            DONE,
        ),
        expected=Expected(
            status="complete",
            tool_calls=(
                call("call_x7KqP2", "get_weather", json.dumps({"city": "Oslo", "unit": "celsius"})),
            ),
            finish_reason="tool_calls",
        ),
    ),
    # ---- usage ----
    Case(
        name="moonshot_usage_inside_the_choice",
        providers=("Moonshot/Kimi",),
        behaviour="D15: usage sits inside choices[0] of the finish chunk, not at the top level",
        source=(
            "https://github.com/northes/go-moonshot/issues/17 "
            "https://github.com/earendil-works/pi/issues/2017"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta)],
                        id="cmpl-1305b94c570f447fbde3180560736287",
                        model="moonshot-v1-8k",
                    )
                )
                for delta in (
                    {"role": "assistant", "content": ""},
                    {"content": "Hello"},
                    {"content": ", friend."},
                )
            ),
            sse(
                body(
                    [choice({}, "stop", usage=usage(19, 13))],
                    id="cmpl-1305b94c570f447fbde3180560736287",
                    model="moonshot-v1-8k",
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Hello, friend.",
            finish_reason="stop",
            usage=(19, 13, 32, 0, 0),
        ),
    ),
    Case(
        name="groq_usage_in_x_groq",
        providers=("Groq",),
        behaviour=(
            "D16: usage (with queue/prompt/completion times) sits in x_groq.usage of the finish "
            "chunk; x_groq.id on the first chunk"
        ),
        source=(
            "https://github.com/vercel/ai/issues/1651 "
            "https://github.com/Portkey-AI/gateway/issues/1338"
        ),
        steps=(
            stream_headers(),
            sse(
                body(
                    [choice({"role": "assistant", "content": ""}, logprobs=None)],
                    **_GROQ,
                    system_fingerprint="fp_3f0c1d2e",
                    x_groq={"id": "req_01jdialect0001"},
                )
            ),
            sse(
                body(
                    [choice({"content": "Fast"}, logprobs=None)],
                    **_GROQ,
                    system_fingerprint="fp_3f0c1d2e",
                )
            ),
            sse(
                body(
                    [choice({"content": " answer."}, logprobs=None)],
                    **_GROQ,
                    system_fingerprint="fp_3f0c1d2e",
                )
            ),
            sse(
                body(
                    [choice({}, "stop", logprobs=None)],
                    **_GROQ,
                    system_fingerprint="fp_3f0c1d2e",
                    x_groq={
                        "id": "req_01jdialect0001",
                        "usage": {
                            "queue_time": 0.0753,
                            "prompt_tokens": 23,
                            "prompt_time": 0.006,
                            "completion_tokens": 19,
                            "completion_time": 0.022,
                            "total_tokens": 42,
                            "total_time": 0.028,
                        },
                    },
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Fast answer.",
            finish_reason="stop",
            usage=(23, 19, 42, 0, 0),
        ),
    ),
    Case(
        name="xai_total_includes_reasoning_then_empty_chunk",
        providers=("xAI",),
        behaviour=(
            "D20 D01: reasoning_tokens are outside completion_tokens, so total_tokens is "
            "prompt + completion + reasoning (stored as reported); extra num_sources_used; "
            "an empty-choices chunk without usage follows the usage chunk"
        ),
        source=(
            "https://github.com/UKGovernmentBEIS/inspect_ai/issues/5528 "
            "https://github.com/evalstate/fast-agent/pull/276 "
            "https://github.com/BerriAI/litellm/issues/17136"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta)],
                        id="3b9e0c7a-2f1d-4e6b-8a5c-d4e3f2a1b0c9",
                        model="grok-3-mini",
                    )
                )
                for delta in (
                    {"role": "assistant", "content": "", "reasoning_content": "Seven"},
                    {"reasoning_content": " times six."},
                    {"content": "42"},
                )
            ),
            sse(
                body(
                    [choice({}, "stop")],
                    id="3b9e0c7a-2f1d-4e6b-8a5c-d4e3f2a1b0c9",
                    model="grok-3-mini",
                )
            ),
            sse(
                body(
                    [],
                    id="3b9e0c7a-2f1d-4e6b-8a5c-d4e3f2a1b0c9",
                    model="grok-3-mini",
                    usage=usage(
                        28,
                        9,
                        57,
                        prompt_tokens_details={
                            "text_tokens": 28,
                            "audio_tokens": 0,
                            "image_tokens": 0,
                            "cached_tokens": 6,
                        },
                        completion_tokens_details={
                            "reasoning_tokens": 20,
                            "audio_tokens": 0,
                            "accepted_prediction_tokens": 0,
                            "rejected_prediction_tokens": 0,
                        },
                        num_sources_used=0,
                    ),
                )
            ),
            sse(body([], id="3b9e0c7a-2f1d-4e6b-8a5c-d4e3f2a1b0c9", model="grok-3-mini")),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="42",
            reasoning="Seven times six.",
            finish_reason="stop",
            usage=(28, 9, 57, 6, 20),
        ),
    ),
    Case(
        name="perplexity_cumulative_usage_and_message_on_every_chunk",
        providers=("Perplexity", "Gemini (OpenAI compatibility)", "Zhipu GLM"),
        behaviour=(
            "D18 D23 D47: every chunk carries the whole usage so far (cumulative; the last "
            "wins), a cost object, citations and search_results, and the message so far "
            "beside the delta"
        ),
        source=(
            "https://github.com/langchain-ai/langchain/pull/39924 "
            "https://docs.perplexity.ai/guides/pro-search-stream-mode-guide "
            "https://github.com/promptfoo/promptfoo/pull/10809 "
            "https://github.com/ogx-ai/ogx/issues/5122"
        ),
        steps=(
            stream_headers(),
            _pplx({"role": "assistant", "content": "Tides follow"}, "Tides follow", 3),
            _pplx({"content": " the Moon"}, "Tides follow the Moon", 6),
            _pplx({"content": "."}, "Tides follow the Moon.", 7),
            _pplx({"content": ""}, "Tides follow the Moon.", 7, "stop"),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Tides follow the Moon.",
            finish_reason="stop",
            usage=(8, 7, 15, 0, 0),
        ),
    ),
    Case(
        name="newapi_usage_never_sent",
        providers=("one-api/new-api", "Gemini (via relays)", "Moonshot/Kimi (older)"),
        behaviour=(
            'D22: stream_options.include_usage is ignored: every chunk says "usage": null and '
            "no usage ever comes (estimated)"
        ),
        source=(
            "https://github.com/QuantumNous/new-api/issues/1483 "
            "https://github.com/langchain-ai/langchainjs/pull/5551"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [{"delta": delta, "logprobs": None, "finish_reason": finish, "index": 0}],
                        id="chatcmpl-NewApiDialect",
                        model="gemini-2.5-pro",
                        system_fingerprint=None,
                        usage=None,
                    )
                )
                for delta, finish in (
                    ({"role": "assistant", "content": "Good day"}, None),
                    ({"content": " to you too."}, None),
                    ({}, "stop"),
                )
            ),
            DONE,
        ),
        expected=Expected(status="complete", content="Good day to you too.", finish_reason="stop"),
    ),
    # ---- finish reasons ----
    Case(
        name="together_eos_in_last_content_chunk_with_usage",
        providers=("Together",),
        behaviour=(
            'D24 D30 D17: finish_reason "eos", sent in the same chunk as the last content '
            "and the usage; choices also carry text and delta.token_id"
        ),
        source=(
            "https://github.com/openai/openai-dotnet/pull/267 "
            "https://github.com/nextai-translator/nextai-translator/pull/1389 "
            "https://github.com/mlflow/mlflow/pull/11557"
        ),
        steps=(
            stream_headers(),
            _together("Hello", 9906),
            _together(" world", 1917),
            _together("!", 0, "eos", usage(17, 3)),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Hello world!",
            finish_reason="eos",
            usage=(17, 3, 20, 0, 0),
        ),
    ),
    Case(
        name="mistral_model_length",
        providers=("Mistral",),
        behaviour='D25: finish_reason "model_length" (the model\'s context was exhausted)',
        source=(
            "https://docs.rs/crate/mistral-openapi-client/latest/source/docs/"
            "ChatCompletionChoice.md "
            "https://github.com/langchain-ai/langchainjs/releases/tag/@langchain%2Fmistralai@1.2.1"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, finish)],
                        id="cmpl-7d2c4e6f8a0b1c3d5e7f9a1b2c3d4e5f",
                        model="mistral-small-latest",
                    )
                )
                for delta, finish in (
                    ({"role": "assistant", "content": ""}, None),
                    ({"content": "The list goes on"}, None),
                    ({"content": ""}, "model_length"),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete", content="The list goes on", finish_reason="model_length"
        ),
    ),
    Case(
        name="glm_network_error_finish_reason",
        providers=("Zhipu GLM",),
        behaviour=(
            'D26 D01: finish_reason "network_error" when inference breaks mid-answer (also '
            '"sensitive" for content filtering); stored as sent, and the reply fails'
        ),
        source=(
            "https://github.com/BerriAI/litellm/pull/24373 "
            "https://github.com/promptfoo/promptfoo/pull/9905"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, finish)],
                        id="2026010100000001a2b3c4d5e6f7",
                        model="glm-4.6",
                        **extra,
                    )
                )
                for delta, finish, extra in (
                    ({"role": "assistant", "reasoning_content": "A capital city."}, None, {}),
                    ({"role": "assistant", "content": "The capital"}, None, {}),
                    (
                        {"role": "assistant", "content": ""},
                        "network_error",
                        {"usage": usage(11, 6, prompt_tokens_details={"cached_tokens": 0})},
                    ),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="failed",
            content="The capital",
            reasoning="A capital city.",
            finish_reason="network_error",
            usage=(11, 6, 17, 0, 0),
            error="broke off mid-answer",
        ),
    ),
    Case(
        name="deepseek_keepalives_then_insufficient_system_resource",
        providers=("DeepSeek",),
        behaviour=(
            'D27 D39: ": keep-alive" comments while the request waits in the queue; the '
            'reply ends with finish_reason "insufficient_system_resource": the reply fails'
        ),
        source=(
            "https://apidog.com/apidoc/docs-site/747793/pt/limite-835830m0 "
            "https://github.com/Portkey-AI/gateway/blob/main/src/providers/deepseek/types.ts"
        ),
        steps=(
            stream_headers(),
            b": keep-alive\n\n",
            0.05,
            b": keep-alive\n\n",
            0.05,
            sse(body([choice({"role": "assistant", "content": ""})], **_DS, **_DS_EXTRA)),
            sse(body([choice({"content": "Here is the first part"})], **_DS, **_DS_EXTRA)),
            sse(
                body(
                    [choice({"content": ""}, "insufficient_system_resource")],
                    **_DS,
                    usage=usage(20, 5),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="failed",
            content="Here is the first part",
            finish_reason="insufficient_system_resource",
            usage=(20, 5, 25, 0, 0),
            error="ran out of capacity",
        ),
    ),
    Case(
        name="bedrock_gateway_end_turn",
        providers=("Bedrock Access Gateway (AWS sample)", "LiteLLM relaying Anthropic (raw)"),
        behaviour='D28: the Anthropic/Bedrock stop reason "end_turn" is passed through as-is',
        source="https://github.com/aws-samples/bedrock-access-gateway/issues/11",
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, finish)],
                        id="chatcmpl-5e7a9c1b",
                        model="anthropic.claude-3-5-sonnet-20241022-v2:0",
                    )
                )
                for delta, finish in (
                    ({"role": "assistant", "content": ""}, None),
                    ({"content": "Done and dusted."}, None),
                    ({}, "end_turn"),
                )
            ),
            DONE,
        ),
        expected=Expected(status="complete", content="Done and dusted.", finish_reason="end_turn"),
    ),
    Case(
        name="vllm_abort_then_done",
        providers=("vLLM",),
        behaviour=(
            'D29: an engine-side abort ends the stream with finish_reason "abort" and an '
            "ordinary [DONE] on HTTP 200: stored as sent, and the reply fails"
        ),
        source="https://github.com/vllm-project/vllm/issues/57082",
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, finish, logprobs=None)],
                        id="chatcmpl-a1b2c3d4e5f60718293a4b5c6d7e8f90",
                        model="meta-llama/Llama-3.1-8B-Instruct",
                    )
                )
                for delta, finish in (
                    ({"role": "assistant", "content": ""}, None),
                    ({"content": "Once upon"}, None),
                    ({"content": ""}, "abort"),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="failed", content="Once upon", finish_reason="abort", error="aborted the reply"
        ),
    ),
    Case(
        name="finish_reason_null_until_done",
        providers=("vLLM", "vllm-mlx", "Gemini (OpenAI compatibility, 2024 beta)", "xAI"),
        behaviour=(
            "D31 D14: finish_reason stays null on every chunk (the beta Gemini endpoint put it in "
            "a camelCase finishReason instead) and [DONE] ends the stream (complete, no finish "
            "reason)"
        ),
        source=(
            "https://github.com/waybarrios/vllm-mlx/issues/628 "
            "https://github.com/vllm-project/vllm/issues/27572 "
            "https://github.com/jakobdylanc/llmcord/issues/84 "
            "https://github.com/evalstate/fast-agent/pull/276"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, None, **extra)],
                        id="chatcmpl-NullFinish01",
                        model="gemini-1.5-flash",
                    )
                )
                for delta, extra in (
                    ({"role": "assistant", "content": "A long chunk of text arrives"}, {}),
                    ({"content": " all at once."}, {}),
                    ({}, {"finishReason": "stop"}),
                )
            ),
            DONE,
        ),
        expected=Expected(status="complete", content="A long chunk of text arrives all at once."),
    ),
    Case(
        name="relay_finish_reason_stop_on_every_chunk",
        providers=("gcli2api (Gemini relay)", "Open WebUI /api/chat/completions"),
        behaviour=(
            'D32: every chunk, reasoning ones included, says finish_reason "stop"; text '
            "keeps coming after the first one"
        ),
        source=(
            "https://github.com/su-kaka/gcli2api/issues/403 "
            "https://github.com/open-webui/open-webui/issues/16377"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta, "stop")],
                        id="chatcmpl-RelayStop01",
                        model="gemini-3.7-flash-high",
                    )
                )
                for delta in (
                    {"role": "assistant", "reasoning_content": "17 * 23 is 391."},
                    {"content": "17 * 23 + 45"},
                    {"content": " = 436."},
                    {},
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="17 * 23 + 45 = 436.",
            reasoning="17 * 23 is 391.",
            finish_reason="stop",
        ),
    ),
    # ---- errors ----
    Case(
        name="llamacpp_error_chunk_mid_stream",
        providers=("llama.cpp server", "SGLang", "Groq", "LiteLLM relaying Anthropic"),
        behaviour=(
            'D33: a mid-stream failure is a data event {"error": {...}} with no choices (here '
            "llama-server's context/KV-cache error); chunks carry a timings object"
        ),
        source=(
            "https://github.com/unslothai/unsloth/pull/9390 "
            "https://github.com/ggml-org/llama.cpp/issues/19774 "
            "https://github.com/block/goose/pull/8031 "
            "https://github.com/tensorzero/tensorzero/pull/1893"
        ),
        steps=(
            stream_headers(),
            _llamacpp({"role": "assistant", "content": None}),
            _llamacpp({"content": "Sure, the"}, n=3),
            sse(
                {
                    "error": {
                        "code": 500,
                        "message": "Context size has been exceeded.",
                        "type": "server_error",
                    }
                }
            ),
            CLOSE,
        ),
        expected=Expected(
            status="failed", content="Sure, the", error="Context size has been exceeded."
        ),
    ),
    Case(
        name="vllm_object_error_mid_stream",
        providers=("vLLM",),
        behaviour=(
            'D34: the mid-stream error is a flat {"object": "error", "message": ...} object, '
            'not an "error" member (treated as an error event)'
        ),
        source=(
            "https://github.com/block/goose/pull/8031 "
            "https://github.com/vllm-project/vllm/issues/17792"
        ),
        steps=(
            stream_headers(),
            sse(
                body(
                    [choice({"role": "assistant", "content": ""}, logprobs=None)],
                    id="chatcmpl-ObjErr01",
                    model="mistralai/Mistral-7B-Instruct-v0.3",
                )
            ),
            sse(
                body(
                    [choice({"content": "Partial answer"}, logprobs=None)],
                    id="chatcmpl-ObjErr01",
                    model="mistralai/Mistral-7B-Instruct-v0.3",
                )
            ),
            sse(
                {
                    "object": "error",
                    "message": "The engine died unexpectedly.",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                }
            ),
            DONE,
        ),
        expected=Expected(
            status="failed", content="Partial answer", error="The engine died unexpectedly."
        ),
    ),
    Case(
        name="openrouter_error_chunk_with_finish_reason_error",
        providers=("OpenRouter",),
        behaviour=(
            'D35: a mid-stream error is a normal chunk with a top-level "error" and a '
            'choice whose finish_reason is "error" (stored as sent)'
        ),
        source=(
            "https://openrouter.ai/docs/api/reference/errors-and-debugging "
            "https://api.koog.ai/prompt/prompt-executor/prompt-executor-clients/"
            "prompt-executor-openrouter-client/ai.koog.prompt.executor.clients.openrouter."
            "models/-open-router-stream-choice/index.html"
        ),
        steps=(
            stream_headers(),
            OPENROUTER_PROCESSING,
            sse(
                body(
                    [choice({"role": "assistant", "content": "The first"})],
                    id="gen-1767225600-OrError01",
                    model="meta-llama/llama-3.3-70b-instruct",
                    provider="Lambda",
                )
            ),
            sse(
                body(
                    [choice({"content": ""}, "error", native_finish_reason="error")],
                    id="gen-1767225600-OrError01",
                    model="meta-llama/llama-3.3-70b-instruct",
                    provider="Lambda",
                    error={"code": "server_error", "message": "Provider disconnected unexpectedly"},
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="failed",
            content="The first",
            finish_reason="error",
            error="Provider disconnected unexpectedly",
        ),
    ),
    Case(
        name="perplexity_event_error_as_first_event",
        providers=("Perplexity", "one-api/new-api"),
        behaviour=(
            "D36: a rejected streaming request still answers HTTP 200 text/event-stream, "
            "whose first event is `event: error` with an error object"
        ),
        source=(
            "https://github.com/openclaw/clawrouter/issues/101 "
            "https://github.com/DeliciousBuding/new-api/issues/142"
        ),
        steps=(
            stream_headers(),
            b'event: error\ndata: {"error":{"message":"invalid request",'
            b'"type":"invalid_request","code":400}}\n\n',
            CLOSE,
        ),
        expected=Expected(status="failed", error="invalid request"),
    ),
    Case(
        name="vllm_http_400_flat_error_object",
        providers=("vLLM",),
        behaviour=(
            'D37: an HTTP error body is {"object": "error", "message": ..., "code": 400} '
            'at the top level, not {"error": {...}}'
        ),
        source="https://github.com/vllm-project/vllm/issues/17792",
        steps=(
            json_response(
                400,
                {
                    "object": "error",
                    "message": '"auto" tool choice requires --enable-auto-tool-choice and '
                    "--tool-call-parser to be set",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            ),
        ),
        expected=Expected(status="failed", error="tool choice requires --enable-auto-tool-choice"),
    ),
    Case(
        name="fireworks_stream_cut_after_reasoning",
        providers=("Fireworks", "DeepSeek", "one-api/new-api"),
        behaviour=(
            "D38: the connection ends after reasoning deltas with neither a finish reason, "
            "usage nor [DONE] (interrupted, reasoning kept)"
        ),
        source=(
            "https://github.com/anomalyco/opencode/issues/37852 "
            "https://github.com/QuantumNous/new-api/issues/7489"
        ),
        steps=(
            stream_headers(),
            *(
                sse(
                    body(
                        [choice(delta)],
                        id="d1e2f3a4-b5c6-47d8-9e0f-a1b2c3d4e5f6",
                        model="accounts/fireworks/models/deepseek-v4-flash",
                    )
                )
                for delta in (
                    {"role": "assistant", "content": "", "reasoning_content": "First, list"},
                    {"reasoning_content": " the files that"},
                )
            ),
            CLOSE,
        ),
        expected=Expected(
            status="interrupted",
            reasoning="First, list the files that",
            error="closed the connection before the reply was finished",
        ),
    ),
    # ---- transport ----
    Case(
        name="sse_starlette_crlf_and_ping_comment",
        providers=("servers built on sse-starlette", "llama-cpp-python (ping comments)"),
        behaviour=(
            "D40 D39: CRLF line endings (sse-starlette's default separator), a CRLF split "
            "across two writes, and a `: ping - <timestamp>` comment"
        ),
        source=(
            "https://github.com/sysid/sse-starlette/blob/main/sse_starlette/event.py "
            "https://github.com/sysid/sse-starlette/blob/main/sse_starlette/sse.py "
            "https://github.com/hey-api/hey-api/issues/3054"
        ),
        steps=(
            stream_headers(),
            b": ping - 2026-01-01 00:00:00.000000+00:00\r\n\r\n",
            crlf(body([choice({"role": "assistant", "content": ""})], id="chatcmpl-crlf01")),
            crlf(body([choice({"content": "Line endings"})], id="chatcmpl-crlf01"))[:-3],
            crlf(body([choice({"content": "Line endings"})], id="chatcmpl-crlf01"))[-3:],
            crlf(body([choice({"content": " differ."})], id="chatcmpl-crlf01")),
            crlf(body([choice({}, "stop")], id="chatcmpl-crlf01")),
            crlf("[DONE]"),
        ),
        expected=Expected(status="complete", content="Line endings differ.", finish_reason="stop"),
    ),
    Case(
        name="longcat_data_without_space",
        providers=("LongCat", "iflow", "Ant Ling", "Spring-based proxies"),
        behaviour=(
            "D41: every line is `data:{...}` with no space after the colon, [DONE] included; "
            "extra top-level content/lastOne fields (their values past the first chunk "
            "assumed)"
        ),
        source=(
            "https://github.com/davidmigloz/langchain_dart/issues/778 "
            "https://github.com/RightNow-AI/openfang/issues/194 "
            "https://github.com/tashfeenahmed/freellmapi/issues/1087 "
            "https://github.com/openai/openai-python/issues/498"
        ),
        steps=(
            stream_headers(),
            *(
                no_space(
                    body(
                        [{"delta": delta, "index": 0, "finish_reason": finish, "logprobs": None}],
                        id="dcbb5851-5eed-4ae8-b90f-050b6cae3b3e",
                        model="LongCat-Flash-Chat",
                        content=delta.get("content", ""),
                        lastOne=finish is not None,
                    )
                )
                for delta, finish in (
                    ({"role": "assistant", "content": "", "function_call": None}, None),
                    ({"content": "No space", "function_call": None}, None),
                    ({"content": " needed.", "function_call": None}, None),
                    ({"content": ""}, "stop"),
                )
            ),
            no_space("[DONE]"),
        ),
        expected=Expected(status="complete", content="No space needed.", finish_reason="stop"),
    ),
    Case(
        name="gateway_gzip_encoded_and_buffered",
        providers=("gateways (Cloudflare, compression middleware, relays)",),
        behaviour=(
            "D42: the SSE body comes gzip-compressed (Content-Encoding: gzip) and, buffered "
            "by the proxy, all at once after a pause, in two writes"
        ),
        source=(
            "https://github.com/Wei-Shaw/claude-relay-service/issues/1027 "
            "https://github.com/Wei-Shaw/claude-relay-service/pull/1056 "
            "https://github.com/cloudflare/cloudflared/issues/1496 "
            "https://github.com/graphql-hive/gateway/issues/2259"
        ),
        steps=(
            response_head(200, "text/event-stream", "Content-Encoding: gzip"),
            0.2,
            *halves(GZIP_STREAM),
        ),
        expected=Expected(
            status="complete",
            content="Compressed on the wire.",
            finish_reason="stop",
            usage=(14, 4, 18, 0, 0),
        ),
    ),
    Case(
        name="openrouter_single_line_over_128k",
        providers=("OpenRouter (Novita, WandB, SiliconFlow upstreams)", "vLLM (Kimi K2.5)"),
        behaviour=(
            "D43 D23: one SSE data line of about 220 KB (a whole reasoning trace in one chunk), "
            "over aiohttp's default 128 KiB line limit, delivered in three writes"
        ),
        source=(
            "https://github.com/open-webui/open-webui/pull/24928 "
            "https://github.com/NVIDIA/TensorRT-LLM/pull/13952"
        ),
        steps=(
            stream_headers(),
            *halves(HUGE_LINE, 3),
            sse(
                body(
                    [choice({"content": "Done."})],
                    id="gen-1767225600-HugeLine01",
                    model="moonshotai/kimi-k2.6",
                    provider="Novita",
                )
            ),
            sse(
                body(
                    [choice({}, "stop")],
                    id="gen-1767225600-HugeLine01",
                    model="moonshotai/kimi-k2.6",
                    provider="Novita",
                )
            ),
            sse(
                body(
                    [],
                    id="gen-1767225600-HugeLine01",
                    model="moonshotai/kimi-k2.6",
                    provider="Novita",
                    usage=usage(30, 55000, cost=0.1375, is_byok=False),
                )
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Done.",
            reasoning=HUGE_REASONING,
            finish_reason="stop",
            usage=(30, 55000, 55030, 0, 0),
        ),
    ),
    Case(
        name="azure_prompt_filter_and_annotation_chunks",
        providers=("Azure OpenAI",),
        behaviour=(
            'D44: the first chunk has empty choices, id "", object "", created 0 and '
            "prompt_filter_results; content chunks carry content_filter_results; an "
            "asynchronous-filter chunk has a choice without any delta"
        ),
        source=(
            "https://github.com/pydantic/pydantic-ai/issues/797 "
            "https://github.com/microsoft/autogen/issues/6465 "
            "https://github.com/openai/openai-python/issues/1677"
        ),
        steps=(
            stream_headers(),
            sse(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": AZURE_FILTERS}
                    ],
                }
            ),
            _azure(
                [choice({"role": "assistant", "content": ""}, content_filter_results={})],
                usage=None,
            ),
            _azure(
                [choice({"content": "Filtered"}, content_filter_results=AZURE_FILTERS)], usage=None
            ),
            _azure(
                [choice({"content": " but fine."}, content_filter_results=AZURE_FILTERS)],
                usage=None,
            ),
            sse(
                {
                    "id": "",
                    "object": "",
                    "created": 0,
                    "model": "",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "content_filter_results": AZURE_FILTERS,
                            "content_filter_offsets": {
                                "check_offset": 35,
                                "start_offset": 35,
                                "end_offset": 61,
                            },
                        }
                    ],
                    "usage": None,
                }
            ),
            _azure([choice({}, "stop", content_filter_results={})], usage=None),
            _azure(
                [],
                usage=usage(
                    12,
                    7,
                    prompt_tokens_details={"cached_tokens": 0},
                    completion_tokens_details={"reasoning_tokens": 0},
                ),
            ),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Filtered but fine.",
            finish_reason="stop",
            usage=(12, 7, 19, 0, 0),
        ),
    ),
    Case(
        name="local_server_json_instead_of_sse",
        providers=("Qualcomm GenieX local server",),
        behaviour=(
            "D45: stream:true is ignored and one application/json chat.completion comes back "
            "(reported for a local server; not confirmed for any hosted provider)"
        ),
        source="https://github.com/qualcomm/GenieX/issues/567",
        steps=(
            json_response(
                200,
                {
                    "id": "chatcmpl-Json01",
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": "Qwen3-1.7B-GGUF",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "All in one piece."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage(9, 5),
                },
            ),
        ),
        expected=Expected(
            status="complete",
            content="All in one piece.",
            finish_reason="stop",
            usage=(9, 5, 14, 0, 0),
        ),
    ),
    Case(
        name="foundry_stream_labelled_application_json",
        providers=("Foundry Local",),
        behaviour=(
            "D48: a real event stream sent with Content-Type application/json "
            "(read as the stream it is)"
        ),
        source="https://github.com/microsoft/Foundry-Local/issues/185",
        steps=(
            response_head(200, "application/json"),
            sse(body([choice({"role": "assistant", "content": "Labelled "})])),
            sse(body([choice({"content": "wrongly."}, "stop")])),
            sse(body([], usage=usage(6, 3))),
            DONE,
        ),
        expected=Expected(
            status="complete",
            content="Labelled wrongly.",
            finish_reason="stop",
            usage=(6, 3, 9, 0, 0),
        ),
    ),
    Case(
        name="litellm_exception_text_as_data",
        providers=("LiteLLM",),
        behaviour=(
            "D49: a proxy failure written as `data: <exception text>`, not JSON, mid-stream "
            "(the reply fails with the text, what came before kept)"
        ),
        source="https://github.com/BerriAI/litellm/issues/21315",
        steps=(
            stream_headers(),
            sse(body([choice({"role": "assistant", "content": "Before the"})])),
            b"data: litellm.APIConnectionError: upstream connection reset\n\n",
        ),
        expected=Expected(
            status="failed",
            content="Before the",
            error="not JSON: litellm.APIConnectionError: upstream connection reset",
        ),
    ),
    Case(
        name="newapi_sse_error_body_on_http_error",
        providers=("one-api / new-api",),
        behaviour=(
            "D50: an HTTP error whose body is an SSE error event rather than a JSON object "
            "(the message is shown as the provider sent it)"
        ),
        source="https://github.com/QuantumNous/new-api/issues/1483",
        steps=(
            response_head(429, "text/event-stream", f"Content-Length: {len(SSE_ERROR_BODY)}")
            + SSE_ERROR_BODY,
        ),
        expected=Expected(status="failed", error="Relay quota used up"),
    ),
]

BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


def cases_for(provider):
    """The cases whose providers mention `provider` (case-insensitive substring)."""
    return [c for c in CASES if any(provider.lower() in p.lower() for p in c.providers)]
