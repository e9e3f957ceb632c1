"""The replies the fake upstream streams, and the prompts that name them.

Every stream has a key (for example `r100-17`: phase `r100`, client 17). The prompt carries
the key, and the reply's tokens are a pure function of it, so a client knows exactly what it
should receive without any marker in the text.
"""

import random
import re

MODEL = "bench-model"

ENGLISH = (
    "Here is how a relay streams a reply. The provider sends one small chunk at a time, "
    "usually a word or part of one, and the server passes each chunk on to the browser as "
    "soon as it can.\n\nA few things matter:\n\n1. Latency: the first token should appear "
    "at once.\n2. Cost: every chunk is parsed, folded and sent again, so the work per chunk "
    "decides how many people can chat at once.\n3. Durability: the text is saved now and "
    "then, never once per token.\n\n"
)
CHINESE = (
    "我们来看一下这个问题。服务器从上游逐块读取回复，每一块通常只有一两个字，"
    "然后尽快转发给浏览器。首个字应当立即出现；每一块都要解析、合并、再发送，"
    "所以每块的开销决定了同时能有多少人聊天。\n\n"
)
CODE = "```python\ndef relay(chunks):\n    for chunk in chunks:\n        yield chunk.text\n```\n\n"

PROMPT = re.compile(r"\[bench (?P<key>[\w.-]+)\]")


def _english_tokens(text):
    """Words with their leading space, punctuation apart, newlines kept: roughly BPE tokens."""
    return re.findall(r" ?[A-Za-z]+|\d+|[^\sA-Za-z\d]|\n+| +", text)


def _chinese_tokens(text):
    """One or two characters per token, as Chinese usually tokenises."""
    return re.findall(r"[，。；：！？\n]+|[^，。；：！？\n]{1,2}", text)


VOCABULARY = tuple(_english_tokens(ENGLISH) + _chinese_tokens(CHINESE) + _english_tokens(CODE))


def reply_tokens(key, count):
    """The `count` content chunks of the reply to stream `key`: the same every time."""
    start = random.Random(key).randrange(len(VOCABULARY))
    return [VOCABULARY[(start + i) % len(VOCABULARY)] for i in range(count)]


def prompt(key):
    return f"[bench {key}] Explain how a relay streams a reply, please."


def key_from(messages):
    """The stream key named by the last user message of a Chat Completions request.

    Only at the start of the message: a request that quotes a benchmark prompt (Confab's
    auto-title request does) is another request, and must not take over its timeline.
    """
    for message in reversed(messages or ()):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            match = PROMPT.match(message["content"])
            return match["key"] if match else None
    return None
