"""A real SMTP server on loopback (aiosmtpd) that keeps what it is sent, for the e-mail
tests: they read the message as its recipient would, and follow its link."""

import email
import email.policy
import re
import threading
import time

from aiosmtpd.controller import Controller

from conversations.management.commands.serve import free_port

LINK = re.compile(r"https?://\S+")


class Mailbox:
    def __init__(self):
        self.messages = []
        self.arrived = threading.Condition()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    @property
    def port(self):
        return self.controller.port

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def clear(self):
        with self.arrived:
            self.messages.clear()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append((envelope.rcpt_tos, message))
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, to, timeout=10):
        """The first message to `to`, once it has arrived."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for recipients, message in self.messages:
                    if to in recipients:
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no e-mail to {to} within {timeout} s")
                self.arrived.wait(left)

    def to(self, address):
        return [message for recipients, message in self.messages if address in recipients]


def body(message):
    return message.get_body(("plain",)).get_content()


def link(message):
    """The one link of a message."""
    (found,) = LINK.findall(body(message))
    return found
