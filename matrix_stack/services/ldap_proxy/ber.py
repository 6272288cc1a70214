"""The slice of BER that an LDAP proxy needs (RFC 4511, definite lengths, one-byte tags): frame a PDU,
read its message id and operation tag, read the few fields it acts on, and build its own answers.

The hot path only frames and reads the tag; binds, extended operations and their results are the only
PDUs decoded further.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
INTEGER = 0x02
OCTET_STRING = 0x04
ENUMERATED = 0x0A
BOOLEAN = 0x01

# protocolOp tags: [APPLICATION n], constructed (0x60) or primitive (0x40)
BIND_REQUEST = 0x60
BIND_RESPONSE = 0x61
UNBIND_REQUEST = 0x42
SEARCH_REQUEST = 0x63
SEARCH_RESULT_ENTRY = 0x64
SEARCH_RESULT_DONE = 0x65
SEARCH_RESULT_REFERENCE = 0x73
MODIFY_REQUEST = 0x66
MODIFY_RESPONSE = 0x67
ADD_REQUEST = 0x68
ADD_RESPONSE = 0x69
DEL_REQUEST = 0x4A
DEL_RESPONSE = 0x6B
MODDN_REQUEST = 0x6C
MODDN_RESPONSE = 0x6D
COMPARE_REQUEST = 0x6E
COMPARE_RESPONSE = 0x6F
ABANDON_REQUEST = 0x50
EXTENDED_REQUEST = 0x77
EXTENDED_RESPONSE = 0x78

# What a client may send, and the response tag of the writes a read-only proxy answers itself.
REQUESTS = frozenset(
    {BIND_REQUEST, UNBIND_REQUEST, SEARCH_REQUEST, MODIFY_REQUEST, ADD_REQUEST, DEL_REQUEST,
     MODDN_REQUEST, COMPARE_REQUEST, ABANDON_REQUEST, EXTENDED_REQUEST}
)  # fmt: skip
WRITES = {ADD_REQUEST: ADD_RESPONSE, DEL_REQUEST: DEL_RESPONSE, MODIFY_REQUEST: MODIFY_RESPONSE,
          MODDN_REQUEST: MODDN_RESPONSE}  # fmt: skip
NO_RESPONSE = frozenset({UNBIND_REQUEST, ABANDON_REQUEST})
OPERATION_NAMES = {
    BIND_REQUEST: "bind", UNBIND_REQUEST: "unbind", SEARCH_REQUEST: "search", MODIFY_REQUEST: "modify",
    ADD_REQUEST: "add", DEL_REQUEST: "delete", MODDN_REQUEST: "modDN", COMPARE_REQUEST: "compare",
    ABANDON_REQUEST: "abandon", EXTENDED_REQUEST: "extended",
}  # fmt: skip

# Result codes the proxy uses or reports by name (RFC 4511 appendix A)
RESULT_NAMES = {
    0: "success", 1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
    4: "sizeLimitExceeded", 7: "authMethodNotSupported", 8: "strongerAuthRequired",
    13: "confidentialityRequired", 14: "saslBindInProgress", 32: "noSuchObject",
    34: "invalidDNSyntax", 48: "inappropriateAuthentication", 49: "invalidCredentials",
    50: "insufficientAccessRights", 51: "busy", 52: "unavailable", 53: "unwillingToPerform",
    80: "other",
}  # fmt: skip
SUCCESS = 0
OPERATIONS_ERROR = 1
PROTOCOL_ERROR = 2
CONFIDENTIALITY_REQUIRED = 13
SASL_BIND_IN_PROGRESS = 14
INVALID_CREDENTIALS = 49
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53

NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"
MAX_LENGTH_OCTETS = 4  # 4 GiB is beyond any size limit; more octets is garbage


class BerError(ValueError):
    """Bytes that are not an LDAP message."""


def result_name(code: int) -> str:
    return RESULT_NAMES.get(code, str(code))


def pdu_length(buf: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The full length of the LDAPMessage at `start`, or -1 if more bytes are needed."""
    available = len(buf) - start
    if available < 2:
        return -1
    if buf[start] != SEQUENCE:
        raise BerError(f"an LDAP message starts with a SEQUENCE (0x30), not 0x{buf[start]:02x}")
    first = buf[start + 1]
    if first < 0x80:
        return 2 + first
    octets = first & 0x7F
    if octets == 0:
        raise BerError("indefinite lengths are not allowed in LDAP")
    if octets > MAX_LENGTH_OCTETS:
        raise BerError(f"a length of {octets} octets")
    if available < 2 + octets:
        return -1
    length = int.from_bytes(buf[start + 2 : start + 2 + octets], "big")
    return 2 + octets + length


def whole_pdu(buf: bytes) -> bool:
    """`buf` is exactly one LDAPMessage, as far as its length says (never raises: garbage is False)."""
    try:
        return pdu_length(buf) == len(buf)
    except BerError:
        return False


def read_tlv(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at `pos`, which must lie before `end`."""
    if pos + 2 > end:
        raise BerError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("multi-byte tags are not used by LDAP")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        octets = first & 0x7F
        if octets == 0 or octets > MAX_LENGTH_OCTETS or pos + octets > end:
            raise BerError("bad length")
        length = int.from_bytes(buf[pos : pos + octets], "big")
        pos += octets
    if pos + length > end:
        raise BerError("an element runs past its container")
    return tag, pos, pos + length


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, and one is made per PDU
class Envelope:
    message_id: int
    op: int  # the protocolOp tag
    op_start: int  # where the protocolOp's value starts
    op_end: int


def envelope(pdu: bytes | memoryview) -> Envelope:
    """Message id and operation of one framed PDU."""
    size = len(pdu)
    # The usual request (short lengths, a message id of 1 to 4 octets, no controls) is read in place:
    # a fraction of the calls and tuples below. Any other goes the long way, which names what is wrong.
    if 7 <= size <= 0x81 and pdu[0] == SEQUENCE and pdu[1] == size - 2 and pdu[2] == INTEGER:
        op_at = 4 + pdu[3]
        if (
            5 <= op_at <= 8
            and op_at + 2 <= size
            and pdu[op_at + 1] == size - op_at - 2
            and pdu[op_at] & 0x1F != 0x1F
        ):
            message_id = int.from_bytes(pdu[4:op_at], "big", signed=True)
            if message_id >= 0:
                return Envelope(message_id, pdu[op_at], op_at + 2, size)
    return _envelope(pdu)


def _envelope(pdu: bytes | memoryview) -> Envelope:
    tag, start, end = read_tlv(pdu, 0, len(pdu))
    if tag != SEQUENCE or end != len(pdu):
        raise BerError("not a single LDAPMessage")
    tag, id_start, id_end = read_tlv(pdu, start, end)
    if tag != INTEGER or not 1 <= id_end - id_start <= 4:
        raise BerError("the message id is not a small INTEGER")
    message_id = int.from_bytes(pdu[id_start:id_end], "big", signed=True)
    if message_id < 0:
        raise BerError("a negative message id")
    op, op_start, op_end = read_tlv(pdu, id_end, end)
    return Envelope(message_id, op, op_start, op_end)


@dataclass(slots=True)
class BindRequest:
    version: int
    name: str
    simple: bool  # simple (True) or SASL
    has_password: bool


def bind_request(pdu: bytes, env: Envelope) -> BindRequest:
    start, end = env.op_start, env.op_end
    # The usual bind (a one-octet version, a DN and a simple password of short lengths) is read in place.
    if end - start >= 7 and pdu[start] == INTEGER and pdu[start + 1] == 1 and pdu[start + 3] == OCTET_STRING:
        auth = start + 5 + pdu[start + 4]
        if (
            auth + 2 <= end
            and pdu[auth] == 0x80
            and pdu[start + 4] < 0x80
            and pdu[auth + 1] == end - auth - 2 < 0x80
        ):
            return BindRequest(pdu[start + 2], _dn(pdu[start + 5 : auth]), True, auth + 2 < end)
    return _bind_request(pdu, env)


def _bind_request(pdu: bytes, env: Envelope) -> BindRequest:
    tag, start, end = read_tlv(pdu, env.op_start, env.op_end)
    if tag != INTEGER or end - start != 1:
        raise BerError("bind version")
    version = pdu[start]
    tag, start, end = read_tlv(pdu, end, env.op_end)
    if tag != OCTET_STRING:
        raise BerError("bind name")
    name = _dn(pdu[start:end])
    tag, start, end = read_tlv(pdu, end, env.op_end)
    if tag == 0x80:
        return BindRequest(version, name, True, end > start)
    if tag == 0xA3:
        return BindRequest(version, name, False, True)
    raise BerError(f"bind authentication choice 0x{tag:02x}")


def _dn(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BerError("a bind DN that is not UTF-8") from exc


def extended_request_oid(pdu: bytes, env: Envelope) -> str:
    tag, start, end = read_tlv(pdu, env.op_start, env.op_end)
    if tag != 0x80:
        raise BerError("an extended request without a requestName")
    try:
        return pdu[start:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise BerError("an extended request name that is not an OID") from exc


def abandoned_id(pdu: bytes, env: Envelope) -> int:
    """The message id an AbandonRequest names (its value is the INTEGER's content)."""
    if not 1 <= env.op_end - env.op_start <= 4:
        raise BerError("an abandon request without a message id")
    return int.from_bytes(pdu[env.op_start : env.op_end], "big")


def result_code(pdu: bytes | memoryview, env: Envelope) -> int:
    """The resultCode of a response built on LDAPResult (bind, search done, extended, ...)."""
    tag, start, end = read_tlv(pdu, env.op_start, env.op_end)
    if tag != ENUMERATED or not 1 <= end - start <= 4:
        raise BerError("a response without a resultCode")
    return int.from_bytes(pdu[start:end], "big")


# --- encoding -------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


def _integer(tag: int, n: int) -> bytes:
    return tlv(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def message(message_id: int, op: bytes) -> bytes:
    return tlv(SEQUENCE, _integer(INTEGER, message_id) + op)


def result(message_id: int, op: int, code: int, diagnostic: str = "", extra: bytes = b"") -> bytes:
    """An LDAPResult-shaped response: bind, write and extended responses."""
    body = _integer(ENUMERATED, code) + tlv(OCTET_STRING, b"") + tlv(OCTET_STRING, diagnostic.encode())
    return message(message_id, tlv(op, body + extra))


def extended_response(message_id: int, code: int, diagnostic: str = "", oid: str | None = None) -> bytes:
    return result(message_id, EXTENDED_RESPONSE, code, diagnostic, tlv(0x8A, oid.encode()) if oid else b"")


def notice_of_disconnection(code: int, diagnostic: str) -> bytes:
    """RFC 4511 4.4.1: the unsolicited notice a server sends before it closes a connection."""
    return extended_response(0, code, diagnostic, NOTICE_OF_DISCONNECTION_OID)


def simple_bind(message_id: int, dn: str = "", password: str = "") -> bytes:
    body = _integer(INTEGER, 3) + tlv(OCTET_STRING, dn.encode()) + tlv(0x80, password.encode())
    return message(message_id, tlv(BIND_REQUEST, body))


def rootdse_search(message_id: int) -> bytes:
    """Base search of "" for (objectClass=*), asking for supportedLDAPVersion."""
    body = (
        tlv(OCTET_STRING, b"")
        + _integer(ENUMERATED, 0)  # scope: baseObject
        + _integer(ENUMERATED, 0)  # derefAliases: never
        + _integer(INTEGER, 0)  # sizeLimit
        + _integer(INTEGER, 0)  # timeLimit
        + tlv(BOOLEAN, b"\x00")  # typesOnly
        + tlv(0x87, b"objectClass")  # present filter
        + tlv(SEQUENCE, tlv(OCTET_STRING, b"supportedLDAPVersion"))
    )
    return message(message_id, tlv(SEARCH_REQUEST, body))


def extended_request(message_id: int, oid: str) -> bytes:
    return message(message_id, tlv(EXTENDED_REQUEST, tlv(0x80, oid.encode())))


def unbind(message_id: int) -> bytes:
    return message(message_id, tlv(UNBIND_REQUEST, b""))


# Responses that end an operation (entries, references and intermediates do not).
FINAL_RESPONSES = frozenset(
    {BIND_RESPONSE, SEARCH_RESULT_DONE, MODIFY_RESPONSE, ADD_RESPONSE, DEL_RESPONSE, MODDN_RESPONSE,
     COMPARE_RESPONSE, EXTENDED_RESPONSE}
)  # fmt: skip


def _head(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
    """(tag, value start, value length) of the element at `pos`, from its header alone; None while
    the header is incomplete. Long-form lengths are fine (Active Directory sends them everywhere)."""
    if pos + 2 > end:
        return None
    first = buf[pos + 1]
    if first < 0x80:
        return buf[pos], pos + 2, first
    octets = first & 0x7F
    if octets == 0 or octets > MAX_LENGTH_OCTETS:
        raise BerError("bad length")
    if pos + 2 + octets > end:
        return None
    return buf[pos], pos + 2 + octets, int.from_bytes(buf[pos + 2 : pos + 2 + octets], "big")


def peek(buf: bytes | bytearray) -> tuple[int, int, int, int | None] | None:
    """(total length, message id, operation, result code) from the head of a response, before the
    rest of it has arrived; None while the head is incomplete. The code is read for final responses."""
    # The usual answer (short lengths, a one-octet message id and result code) is read in place.
    length = buf[1] if len(buf) >= 10 else 0
    if 8 <= length < 0x80 and buf[0] == SEQUENCE and buf[2] == INTEGER and buf[3] == 1 and buf[6] < 0x80:
        op = buf[5]
        if op not in FINAL_RESPONSES:
            return length + 2, buf[4], op, None
        if buf[7] == ENUMERATED and buf[8] == 1:
            return length + 2, buf[4], op, buf[9]
    return _peek(buf)


def _peek(buf: bytes | bytearray) -> tuple[int, int, int, int | None] | None:
    total = pdu_length(buf)
    if total < 0:
        return None
    end = min(len(buf), total)  # never into the next PDU
    outer = _head(buf, 0, end)
    if outer is None:
        return None
    head = _head(buf, outer[1], end)
    if head is None:
        return None
    tag, start, length = head
    if tag != INTEGER or not 1 <= length <= 4:
        raise BerError("the message id is not a small INTEGER")
    if start + length > end:
        return None
    message_id = int.from_bytes(buf[start : start + length], "big")
    op_head = _head(buf, start + length, end)
    if op_head is None:
        return None
    op = op_head[0]
    if op not in FINAL_RESPONSES:
        return total, message_id, op, None
    code_head = _head(buf, op_head[1], end)
    if code_head is None:
        return None
    tag, start, length = code_head
    if tag != ENUMERATED or not 1 <= length <= 4:
        raise BerError("a response without a resultCode")
    if start + length > end:
        return None
    return total, message_id, op, int.from_bytes(buf[start : start + length], "big")
