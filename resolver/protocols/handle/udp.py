"""Multi-packet UDP (handle.md §3.1): splitting a message into ≤ 512-byte packets and putting
received packets back together.  Sans-IO: the caller owns the socket and the clock.

A message longer than 492 bytes travels as N packets, each with its own envelope: the same
request id, sequence numbers 0..N-1, the truncated (TC) flag set, and the *whole* message's
length.  Reassembly keys packets by (peer, request id), accepts them in any order, ignores
duplicates, and bounds everything a peer can make it hold: the message length (256 KiB), the
number of partial messages, the bytes held in all of them, and their age.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Hashable

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Envelope, HandleProtocolError


def split(message: bytes) -> list[bytes]:
    """Envelope + payload → the datagrams to send (one when it fits in 512 bytes)."""
    if len(message) <= C.UDP_PACKET:
        return [message]
    env = Envelope.from_wire(message)
    payload = memoryview(message)[C.ENVELOPE_SIZE :]
    flags = env.flags | C.ENV_TRUNCATED
    out = []
    for seq, start in enumerate(range(0, len(payload), C.UDP_PAYLOAD)):
        head = dataclasses.replace(env, flags=flags, sequence=seq, length=len(payload))
        out.append(head.to_wire() + payload[start : start + C.UDP_PAYLOAD])
    return out


@dataclasses.dataclass(slots=True)
class _Partial:
    envelope: Envelope
    started: float
    chunks: dict[int, bytes] = dataclasses.field(default_factory=dict)
    held: int = 0


class Reassembler:
    """Collects the packets of multi-packet messages; ``feed`` returns a message when whole."""

    def __init__(self, *, max_messages: int = 1024, max_bytes: int = 16 << 20,
                 timeout: float = 5.0, clock=time.monotonic) -> None:  # fmt: skip
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.clock = clock
        self._partials: dict[tuple[Hashable, int], _Partial] = {}
        self._held = 0

    def __len__(self) -> int:
        return len(self._partials)

    @property
    def held_bytes(self) -> int:
        return self._held

    def feed(self, peer: Hashable, datagram: bytes) -> tuple[Envelope, bytes] | None:
        """One packet with TC set → (first envelope, whole payload) when complete, else None.

        Raises ``HandleProtocolError`` for a packet that cannot belong to a valid message
        (the caller drops it: there is no complete request to answer).
        """
        env = Envelope.from_wire(datagram)
        chunk = bytes(datagram[C.ENVELOPE_SIZE :])
        if env.length > C.MAX_MESSAGE:
            raise HandleProtocolError(f"message longer than {C.MAX_MESSAGE} bytes")
        if not chunk or len(chunk) > env.length or env.sequence >= env.length:
            raise HandleProtocolError("packet does not fit the announced message")
        now = self.clock()
        self.expire(now)
        key = (peer, env.request_id)
        part = self._partials.get(key)
        if part is None:
            if len(self._partials) >= self.max_messages:
                raise HandleProtocolError("too many partial messages")
            part = self._partials[key] = _Partial(env, now)
        elif part.envelope.length != env.length:
            self._drop(key)
            raise HandleProtocolError("packets of one message disagree on its length")
        if env.sequence in part.chunks:
            return None  # duplicate
        if part.held + len(chunk) > env.length or self._held + len(chunk) > self.max_bytes:
            self._drop(key)
            raise HandleProtocolError("packets exceed the message length or the buffer cap")
        part.chunks[env.sequence] = chunk
        part.held += len(chunk)
        self._held += len(chunk)
        if part.held < env.length:
            return None
        self._drop(key)
        if sorted(part.chunks) != list(range(len(part.chunks))):
            raise HandleProtocolError("packet sequence numbers are not 0..N-1")
        return part.envelope, b"".join(part.chunks[i] for i in range(len(part.chunks)))

    def expire(self, now: float | None = None) -> int:
        """Forget partial messages older than ``timeout``; returns how many were dropped."""
        now = self.clock() if now is None else now
        old = [k for k, p in self._partials.items() if now - p.started > self.timeout]
        for k in old:
            self._drop(k)
        return len(old)

    def _drop(self, key) -> None:
        part = self._partials.pop(key, None)
        if part is not None:
            self._held -= part.held
