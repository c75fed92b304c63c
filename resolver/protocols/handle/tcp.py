"""TCP framing of Handle messages (handle.md §3.1): envelope + message, back to back, several
per connection.  Sans-IO: ``FrameBuffer.feed(data)`` yields whole frames as they complete.

A frame announcing more than 256 KiB raises ``HandleProtocolError`` before any of it is
buffered, so a peer can make the buffer hold at most one envelope plus one maximal message.
"""

from __future__ import annotations

from typing import Iterator

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Envelope, HandleProtocolError


class FrameTooLong(HandleProtocolError):
    """A frame announced a message longer than 256 KiB; ``envelope`` is the offending one."""

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(f"message longer than {C.MAX_MESSAGE} bytes")
        self.envelope = envelope


class FrameBuffer:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[tuple[Envelope, bytes]]:
        """Append ``data``; yield (envelope, whole frame = envelope + message) per complete frame."""
        buf = self._buf
        buf += data
        while len(buf) >= C.ENVELOPE_SIZE:
            env = Envelope.from_wire(buf)
            if env.length > C.MAX_MESSAGE:
                raise FrameTooLong(env)
            end = C.ENVELOPE_SIZE + env.length
            if len(buf) < end:
                return
            frame = bytes(buf[:end])
            del buf[:end]
            yield env, frame
