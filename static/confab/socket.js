// The chat websocket: JSON events in and out, reconnecting by itself with backoff.
// Close code 4401: signed out, so no reconnecting.

export class ChatSocket {
  constructor(path, { onEvent, onOpen, onStatus }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onStatus = onStatus;
    this.attempt = 0;
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener("open", () => {
      this.attempt = 0;
      this.onStatus("open");
      this.onOpen();
    });
    this.ws.addEventListener("message", (frame) => {
      let event;
      try {
        event = JSON.parse(frame.data);
      } catch {
        return;
      }
      this.onEvent(event);
    });
    this.ws.addEventListener("close", (close) => {
      if (close.code === 4401) {
        this.onStatus("signed-out");
        return;
      }
      this.onStatus("reconnecting");
      const delay = Math.min(10000, 500 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      setTimeout(() => this.connect(), delay);
    });
  }

  // False when the socket is down: the page re-sends what matters (subscribe, unconfirmed
  // sends) in onOpen, so nothing is queued here twice.
  send(event) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  // For tests and for leaving the page: drop the connection as a network failure would.
  drop() {
    this.ws.close();
  }
}
