// The chat websocket: JSON events in and out, reconnecting by itself with backoff.

export class ChatSocket {
  constructor(path, { onEvent, onOpen, onStatus }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onStatus = onStatus;
    this.queue = [];
    this.attempt = 0;
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener("open", () => {
      this.attempt = 0;
      this.onStatus("open");
      this.onOpen();
      for (const event of this.queue.splice(0)) this.send(event);
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

  send(event) {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(event));
    } else {
      this.queue.push(event);
    }
  }
}
