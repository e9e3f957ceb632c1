"""Server-Sent Events, split from the bytes of a response as they arrive.

The event stream format of the HTML specification, reduced to what a Chat Completions
stream uses: `data` lines (joined with LF when there are several), `event` (providers name
errors `error`), comments and other fields ignored, an empty line dispatching the event if it
has data, a UTF-8 BOM at the start dropped. Lines may end in CRLF, LF or CR, and a read may
stop anywhere, even between the CR and the LF.

Why not httpx-sse: it parses line by line in Python, through httpx's own line splitting,
where the common block here (one `data:` line) costs one find, one slice and one
comparison; measured, reading is the largest single cost of relaying a reply
(docs/performance.md, "Reading the upstream"). The splitting works on bytes, which is safe
for UTF-8 (no byte of a multi-byte character is below 0x80, so CR, LF and ":" never occur
inside one).
"""

# A single event larger than this is not a chat completion chunk: refuse it rather than
# buffer without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024


class EventTooLarge(ValueError):
    pass


class SSESplitter:
    """Feed it bytes; it returns the `(event, data)` pairs (both bytes) they complete.

    `event` is b"" when the event named no type.
    """

    __slots__ = ("_buffer", "_cr", "_first")

    def __init__(self):
        self._buffer = b""
        self._cr = False  # the last read ended in CR (already made LF): drop an LF that follows
        self._first = True  # the first block may start with a BOM

    def feed(self, chunk):
        if not chunk:
            return ()  # nothing, and a CR the last read ended in still awaits its LF
        if self._cr or b"\r" in chunk:
            chunk = self._normalise(chunk)
        buffer = self._buffer
        if buffer:
            start = len(buffer) - 1  # the buffer holds no blank line; one may span the join
            buffer += chunk
        else:
            start, buffer = 0, chunk
        end = buffer.find(b"\n\n", start)
        if end < 0:
            if len(buffer) > MAX_EVENT_BYTES:
                raise EventTooLarge(f"An event of more than {MAX_EVENT_BYTES} bytes.")
            self._buffer = buffer
            return ()
        events, position = [], 0
        while end >= 0:
            block = buffer[position:end]
            position = end + 2
            if self._first:
                self._first = False
                block = block.removeprefix(b"\xef\xbb\xbf")
            if block[:6] == b"data: " and b"\n" not in block:
                events.append((b"", block[6:]))
            elif block:
                self._block(block, events)
            end = buffer.find(b"\n\n", position)
        self._buffer = buffer[position:]
        return events

    def _normalise(self, chunk):
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if chunk[-1:] == b"\r":
            self._cr = True
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    @staticmethod
    def _block(block, events):
        """Any other block, line by line."""
        data, event = None, b""
        for line in block.split(b"\n"):
            if not line or line[0] == 0x3A:  # empty, or a comment
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data = value if data is None else data + b"\n" + value
            elif name == b"event":
                event = value
        if data is not None:
            events.append((event, data))
