"""`manage.py serve`, as `make run` starts it, is daphne: HTTP and the chat websocket."""

import asyncio
from urllib.request import urlopen

import websockets


def test_serve_answers_http_and_the_chat_websocket_with_daphne(server):
    with urlopen(server + "/accounts/login/") as response:
        assert response.status == 200
        assert response.headers["Server"].startswith("daphne")

    async def signed_out_socket():
        url = server.replace("http://", "ws://") + "/ws/chat/"
        async with websockets.connect(url, origin=server) as socket:
            await asyncio.wait_for(socket.wait_closed(), 5)
            return socket.close_code

    assert asyncio.run(signed_out_socket()) == 4401  # accepted, then closed: signed out
