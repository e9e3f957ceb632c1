"""Every provider's dialect, stored exactly: each case of the corpus (tests/dialects.py, the
survey in docs/providers.md) played by the fake upstream over loopback, down to the reply
Confab stores."""

import pytest

from tests.dialects import CASES

pytestmark = pytest.mark.django_db(transaction=True)


def stored(message):
    calls = [
        {"id": c["id"], "type": c["type"], "function": dict(c["function"])}
        for c in message.tool_calls
    ]
    return {
        "status": message.status,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": calls,
        "finish_reason": message.finish_reason,
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_reply_is_stored_as_the_provider_meant_it(stream, settings, case):
    settings.CONFAB_RETRY_BASE_MS = 1  # a case with an HTTP error is retried quickly
    expected = case.expected

    [message] = await stream(list(case.steps))

    assert stored(message) == {
        "status": expected.status,
        "content": expected.content,
        "reasoning": expected.reasoning,
        "tool_calls": [dict(call) for call in expected.tool_calls],
        "finish_reason": expected.finish_reason,
    }
    if expected.usage is None:
        assert message.usage_estimated, "no usage was reported: it is estimated"
    else:
        counts = (message.prompt_tokens, message.completion_tokens, message.total_tokens,
                  message.cached_tokens, message.reasoning_tokens)  # fmt: skip
        assert (counts, message.usage_estimated) == (expected.usage, False)
    assert expected.error in message.error
    if not expected.error:
        assert message.error == ""
