"""The wire format of fedsyn's links: length-prefixed frames, no pickles.

Every message between servers, and between a server and the release server,
is one frame (all integers little-endian)::

    kind u8 | dtype code u8 | ndim u8 | 5 zero bytes | nbytes u64 | ndim x u64 shape | nbytes data

``kind`` 0 (:data:`KIND_ARRAY`) is a numpy array of one of the fixed dtypes of
:data:`DTYPES`; 1 (:data:`KIND_JSON`) a UTF-8 JSON control message (hello,
goodbye, abort, the release server's header and receipt); 2
(:data:`KIND_PING`) a heartbeat without body. A receiver parses the 16-byte
prefix with :func:`decode_prefix`, which bounds the announced size *before*
anything is allocated, reads the shape and body, and turns them into the
message with :func:`finish_frame`. The I/O itself (TLS sockets, one thread per
peer) is :mod:`fedsyn.engines.rep3.net`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ...errors import ProtocolError

__all__ = [
    "DTYPES", "CODE", "PREFIX", "KIND_ARRAY", "KIND_JSON", "KIND_PING", "MAX_NDIM", "CONTROL_MAX",
    "DEFAULT_MAX_FRAME_BYTES", "PING", "encode_array", "encode_json", "decode_prefix", "check_shape",
    "finish_frame",
]

#: dtypes a frame may carry, by wire code.
DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in ("<u8", "<i8", "u1", "?", "<u4", "<i4", "<u2", "<i2", "i1", "<f8", "<f4")
)
#: wire code of each dtype.
CODE = {dt: i for i, dt in enumerate(DTYPES)}
#: the fixed 16-byte prefix: kind, dtype code, ndim, padding, body bytes.
PREFIX = struct.Struct("<BBB5xQ")
KIND_ARRAY, KIND_JSON, KIND_PING = 0, 1, 2
MAX_NDIM = 32
#: Default bound on one array frame between servers when the caller gives none (1 GiB).
DEFAULT_MAX_FRAME_BYTES = 1 << 30
#: Control messages between servers (hello, goodbye, abort) are tiny.
CONTROL_MAX = 64 << 10


def encode_array(array: np.ndarray) -> tuple[bytes, memoryview]:
    """The frame of one array: its prefix and shape (bytes) and a view of a private copy of its data."""
    a = np.asarray(array)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    dt = np.dtype(dt.str) if dt.kind != "b" else np.dtype("?")
    code = CODE.get(dt)
    if code is None:
        raise ProtocolError(f"cannot send arrays of dtype {a.dtype}; allowed: {[d.str for d in DTYPES]}")
    a = np.array(a, dtype=dt, order="C", copy=True)  # the caller may reuse its buffer
    head = PREFIX.pack(KIND_ARRAY, code, a.ndim, a.nbytes) + struct.pack(f"<{a.ndim}Q", *a.shape)
    return head, a.reshape(-1).view(np.uint8).data


def encode_json(obj: Any) -> tuple[bytes, memoryview]:
    """The frame of one control message (compact UTF-8 JSON)."""
    payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return PREFIX.pack(KIND_JSON, 0, 0, len(payload)), memoryview(payload)


PING = (PREFIX.pack(KIND_PING, 0, 0, 0), memoryview(b""))


def decode_prefix(
    prefix: bytes, *, max_array: int = DEFAULT_MAX_FRAME_BYTES, max_control: int = CONTROL_MAX
) -> tuple[int, int, int, int]:
    """Parse and bound a frame prefix; ProtocolError before anything is allocated."""
    kind, code, ndim, nbytes = PREFIX.unpack(prefix)
    if kind not in (KIND_ARRAY, KIND_JSON, KIND_PING) or code >= len(DTYPES) or ndim > MAX_NDIM:
        raise ProtocolError("malformed frame header")
    if kind == KIND_PING and (nbytes or ndim):
        raise ProtocolError("malformed frame header (heartbeat with a body)")
    if kind == KIND_JSON and ndim:
        raise ProtocolError("malformed frame header (control message with a shape)")
    limit = max_array if kind == KIND_ARRAY else max_control
    if nbytes > limit:
        what = "an array" if kind == KIND_ARRAY else "a control message"
        raise ProtocolError(f"{what} of {nbytes} bytes announced, more than the {limit} bytes this link accepts")
    return kind, code, ndim, nbytes


def check_shape(code: int, shape: tuple[int, ...], nbytes: int) -> None:
    """ProtocolError unless ``shape`` of dtype ``code`` is exactly ``nbytes`` long."""
    count = 1
    for s in shape:  # exact integers: a garbled shape must not overflow into a match
        count *= s
    if count * DTYPES[code].itemsize != nbytes:
        raise ProtocolError("frame size does not match its shape")


def finish_frame(kind: int, code: int, shape: tuple[int, ...], buf: np.ndarray):
    """The message of a received body: the JSON object, or the array viewed with its dtype and shape."""
    if kind == KIND_JSON:
        try:
            return json.loads(buf.tobytes().decode("utf-8"))
        except ValueError:  # bad UTF-8 or JSON
            raise ProtocolError("malformed control message") from None
    check_shape(code, shape, buf.size)
    return buf.view(DTYPES[code]).reshape(shape)
