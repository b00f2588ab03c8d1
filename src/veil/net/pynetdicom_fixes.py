"""Three narrow fixes to pynetdicom 3.0.4, applied once by :func:`apply` before veil opens an association (which
also makes ``send_c_store(path)`` send the file's bytes in chunks, undecoded).

1. **Nagle's algorithm.** pynetdicom leaves it on, so each C-STORE response waits for the peer's delayed ACK
   (about 40 ms: some 10 instances a second). Every socket pynetdicom creates or accepts gets ``TCP_NODELAY``.
2. **The reactor takes a response meant for a ``send_*()`` call.** ``Association.send_c_store`` (and the other
   ``send_*`` methods) pause the reactor thread through ``_reactor_checkpoint`` and then wait for the response
   on the DIMSE queue. The pause handshake reads ``_is_paused``, which the reactor sets to True *before* it
   checks the checkpoint: the sender can see True while the reactor is already past the check, and the reactor's
   next non-blocking ``get_msg`` then takes the response off the queue (and drops it); the sender times out and
   aborts. Once replies are fast (fix 1), this happens within a few hundred instances. The fix: while a
   ``send_*`` call has paused the reactor, the reactor's non-blocking ``get_msg`` leaves a *response* at the
   head of the queue to the sender; the check and the take are one step under the queue's own lock. A response
   can only arrive after its request was sent, so after the pause began: the reactor never takes one meant for
   a waiting sender. Requests (what the reactor serves) are taken as before.

3. **Polling latency.** The DUL thread and the association's reactor poll their queues and sleep 1 ms whenever
   a loop found nothing to do, so each C-STORE round trip waits some 1.5 ms on average in sleeps (about 300
   instances a second on one association, whatever the handler costs). While an association is busy (an event
   in the last 50 ms) those two sleeps last 0.1 ms instead; an idle association polls as before. Only the two
   modules' ``time.sleep(0.001)`` calls change: every other wait keeps its length.

4. **The C-STORE response.** pynetdicom builds each response as a pydicom Dataset and encodes it (about a
   third of the CPU a received instance costs). A plain C-STORE-RSP (no error comment, no offending element)
   is seven fixed elements, so it is written directly (Implicit VR Little Endian, PS3.7 9.3.1.2 and E.1) as
   one command PDV; any other message, and any association with an ``EVT_DIMSE_SENT`` handler, takes
   pynetdicom's path.

Upstream: the checkpoint came with pydicom/pynetdicom#351; the symptom is reported as pydicom/pynetdicom#842
and #850 ("DIMSE timeout" with send_c_store). Remove this module when a release fixes the handshake.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import types
from typing import Any

__all__ = ["apply", "applied"]

_lock = threading.Lock()
_applied = False


def applied() -> bool:
    return _applied


_BUSY_SECONDS = 0.05
_BUSY_SLEEP = 0.0001
_last_event = [0.0]


def _short_sleep(seconds: float) -> None:
    if seconds == 0.001 and time.monotonic() - _last_event[0] < _BUSY_SECONDS:
        seconds = _BUSY_SLEEP
    time.sleep(seconds)


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _uid(value: object) -> bytes:
    raw = str(value).encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def encode_store_response(primitive: Any) -> bytes:
    """The command set of a plain C-STORE-RSP (Implicit VR Little Endian), group length first."""
    body = (_element(0x00000002, _uid(primitive.AffectedSOPClassUID))
            + _element(0x00000100, struct.pack("<H", 0x8001))
            + _element(0x00000120, struct.pack("<H", int(primitive.MessageIDBeingRespondedTo)))
            + _element(0x00000800, struct.pack("<H", 0x0101))
            + _element(0x00000900, struct.pack("<H", int(primitive.Status)))
            + _element(0x00001000, _uid(primitive.AffectedSOPInstanceUID)))
    return _element(0x00000000, struct.pack("<I", len(body))) + body


def _clock() -> types.SimpleNamespace:
    """The ``time`` module as the DUL and the association see it: the same, with :func:`_short_sleep`."""
    names = {name: getattr(time, name) for name in dir(time) if not name.startswith("__")}
    return types.SimpleNamespace(**{**names, "sleep": _short_sleep})


def _nodelay(sock: Any) -> None:
    if sock is None:
        return
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # a socket already closed: nothing to speed up


def apply() -> None:
    """Installs both fixes (idempotent)."""
    global _applied
    with _lock:
        if _applied:
            return
        from pynetdicom import _config, association, dul, transport
        from pynetdicom.dimse import DIMSEServiceProvider

        # Send a file's dataset as it is, read in chunks, never decoded and re-encoded (veil's outputs are
        # already what should arrive).
        _config.STORE_SEND_CHUNKED_DATASET = True
        # No per-PDU and per-message logging handlers: their debug lines name AE titles and UIDs (veil logs no
        # value from a dataset), and formatting them costs on every message whatever the log level.
        _config.LOG_HANDLER_LEVEL = "none"

        create = transport.AssociationSocket._create_socket
        init = transport.AssociationSocket.__init__

        def _create_socket(self: Any, address: Any) -> socket.socket:
            sock = create(self, address)
            _nodelay(sock)
            return sock

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            _nodelay(getattr(self, "socket", None))

        transport.AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
        transport.AssociationSocket.__init__ = __init__  # type: ignore[method-assign]

        get_msg = DIMSEServiceProvider.get_msg

        def guarded_get_msg(self: Any, block: bool = False) -> Any:
            assoc = getattr(self, "assoc", None)
            if block or assoc is None or threading.current_thread() is not assoc:
                return get_msg(self, block)
            q = self.msg_queue
            with q.mutex:
                if not q.queue:
                    return None, None
                head = q.queue[0][1]
                if getattr(head, "Status", None) is not None and not assoc._reactor_checkpoint.is_set():  # type: ignore[attr-defined]
                    return None, None  # a response for the send_*() call that paused the reactor
            return get_msg(self, False)

        DIMSEServiceProvider.get_msg = guarded_get_msg  # type: ignore[method-assign]

        from pynetdicom import evt
        from pynetdicom.dimse_primitives import C_STORE
        from pynetdicom.pdu_primitives import P_DATA

        send_msg = DIMSEServiceProvider.send_msg

        def fast_send_msg(self: Any, primitive: Any, context_id: int) -> None:
            plain = (type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None
                     and primitive.Status is not None and primitive.AffectedSOPClassUID
                     and primitive.AffectedSOPInstanceUID and getattr(primitive, "ErrorComment", None) is None
                     and getattr(primitive, "OffendingElement", None) is None
                     and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT))
            if not plain:
                send_msg(self, primitive, context_id)
                return
            command = encode_store_response(primitive)
            if self.maximum_pdu_size and len(command) + 6 > self.maximum_pdu_size:
                send_msg(self, primitive, context_id)
                return
            pdata = P_DATA()
            # a list [ID, PDV] at run time (the type stubs say a tuple): the command, last fragment
            pdata.presentation_data_value_list = [[context_id, b"\x03" + command]]  # type: ignore[list-item]
            self.dul.send_pdu(pdata)

        DIMSEServiceProvider.send_msg = fast_send_msg  # type: ignore[method-assign]

        provider = dul.DULServiceProvider
        transport_event, recv_primitive = provider._is_transport_event, provider._process_recv_primitive

        def _is_transport_event(self: Any) -> bool:
            if transport_event(self):
                _last_event[0] = time.monotonic()
                return True
            return False

        def _process_recv_primitive(self: Any) -> bool:
            if recv_primitive(self):
                _last_event[0] = time.monotonic()
                return True
            return False

        provider._is_transport_event = _is_transport_event  # type: ignore[method-assign]
        provider._process_recv_primitive = _process_recv_primitive  # type: ignore[method-assign]
        clock = _clock()
        dul.time = clock  # type: ignore[assignment]
        association.time = clock  # type: ignore[assignment]
        _applied = True
