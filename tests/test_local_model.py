"""One reply from the real bundled model (SmolLM2 under llama-cpp-python's server)."""

import pytest
from channels.db import database_sync_to_async

from conversations.management.commands.serve import free_port, start_local_model
from conversations.models import LanguageModel, Message, Provider, UsageRecord
from tests.helpers import send_event

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def local_model_url():
    port = free_port()
    process = start_local_model(port)
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(10)


@pytest.fixture
def smollm2(db, local_model_url):
    provider = Provider.objects.create(name="Local", base_url=local_model_url)
    return LanguageModel.objects.create(provider=provider, upstream_id="SmolLM2-135M-Instruct")


async def test_a_reply_from_the_local_model_streams_and_is_saved_with_estimated_usage(
    alice, smollm2, sockets
):
    socket = await sockets(alice)
    await socket.send(**send_event("Name three colours.", params={"max_tokens": 24}))

    events = await socket.receive_until("message.done", timeout=120)

    streamed = "".join(e.get("content", "") for e in events if e["type"] == "message.delta")
    done = events[-1]["message"]
    assert done["status"] == "complete"
    assert done["finish_reason"] in {"stop", "length"}
    assert streamed and done["content"] == streamed
    assert done["usage"]["estimated"] is True  # this server sends no usage chunk
    assert done["usage"]["completion_tokens"] > 0
    saved = await database_sync_to_async(Message.objects.get)(id=done["id"])
    assert saved.content == streamed and saved.usage_estimated
    assert await database_sync_to_async(UsageRecord.objects.filter(estimated=True).count)() == 1
