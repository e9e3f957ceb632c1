"""Token usage: what a provider reports, or an estimate when it reports nothing."""

import math
import re
from dataclasses import dataclass
from decimal import Decimal

# Scripts written without spaces between words: about one token per character.
_DENSE = re.compile(
    "[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
# Overhead the chat template adds per message (role markers, separators).
_TOKENS_PER_MESSAGE = 4


def estimate_tokens(text):
    """An approximation of a BPE tokenizer's count that treats CJK text sensibly.

    CJK characters cost about a token each; other text about one token per four
    characters. Good to a few tens of percent, which is what an estimate is for.
    """
    if not text:
        return 0
    dense = len(_DENSE.findall(text))
    return dense + math.ceil((len(text) - dense) / 4)


def estimate_prompt_tokens(messages):
    return sum(_TOKENS_PER_MESSAGE + estimate_tokens(_text(m.get("content"))) for m in messages)


def _text(content):
    """A message's text: its content, or the text of its typed parts (the gateway's)."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


@dataclass
class Usage:
    COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
              "reasoning_tokens")  # fmt: skip

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    # What the provider says the request cost (OpenRouter's usage.cost), if it says.
    cost: Decimal | None = None

    @classmethod
    def from_api(cls, data):
        """Read the `usage` object of a chunk, whichever provider's dialect it is in."""
        prompt = _count(data.get("prompt_tokens"))
        completion = _count(data.get("completion_tokens"))
        prompt_details = _object(data.get("prompt_tokens_details"))
        completion_details = _object(data.get("completion_tokens_details"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=_count(data.get("total_tokens")) or prompt + completion,
            cached_tokens=_count(prompt_details.get("cached_tokens"))
            or _count(data.get("prompt_cache_hit_tokens")),
            reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
            cost=_money(data.get("cost")),
        )

    @classmethod
    def estimate_replies(cls, prompt_tokens, completion_texts):
        """Estimates for the replies of one request whose provider reported no usage: the
        prompt (`prompt_tokens`, estimated when the request was built) counted once and
        shared out, each reply's own text counted."""
        prompts = _apportion(prompt_tokens, [1] * len(completion_texts))
        return [
            cls(prompt, completion, prompt + completion, estimated=True)
            for prompt, completion in zip(
                prompts, map(estimate_tokens, completion_texts), strict=True
            )
        ]

    @classmethod
    def sum(cls, usages):
        fields = [sum(getattr(u, name) for u in usages) for name in cls.COUNTS]
        return cls(*fields, estimated=any(u.estimated for u in usages))

    def share(self, weights):
        """This request's usage split over its replies (choices), adding up to it exactly.

        The prompt is shared evenly; completion and reasoning tokens in proportion to
        `weights`, each reply's share of the generated text. A total beyond prompt and
        completion (xAI counts reasoning there) is shared like the completion.
        """
        even = [1] * len(weights)
        prompts = _apportion(self.prompt_tokens, even)
        cached = _apportion(self.cached_tokens, even)
        completions = _apportion(self.completion_tokens, weights)
        reasoning = _apportion(self.reasoning_tokens, weights)
        beyond = self.total_tokens - self.prompt_tokens - self.completion_tokens
        extra = _apportion(max(beyond, 0), weights)
        return [
            Usage(p, c, p + c + e, k, r, self.estimated)
            for p, c, e, k, r in zip(prompts, completions, extra, cached, reasoning, strict=True)
        ]

    def as_fields(self):
        """The counts, by name: the fields of models.TokenCounts."""
        return {name: getattr(self, name) for name in self.COUNTS}


def _money(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return Decimal(str(value))


def _object(value):
    return value if isinstance(value, dict) else {}


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _apportion(total, weights):
    """Whole numbers in proportion to `weights` that add up to `total` (largest remainder)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts
