"""ldap-proxy's BER reading: the in-place reading of the usual PDUs (short lengths, small message
ids) gives what the general reading gives, for valid PDUs of every size and for mutated ones; where
the general reading refuses bytes, the in-place one never accepts them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from matrix_stack.services.ldap_proxy import ber


def outcome(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ber.BerError:
        return "BerError"


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Requests and responses as clients and directories send them: ids past one octet, DNs and
    passwords past the short length form, responses with and without a diagnostic."""
    message_id = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["bind", "unbind", "search", "extended", "result", "entry"]))
    text = st.text(max_size=300)
    if kind == "bind":
        return ber.simple_bind(message_id, draw(text), draw(text))
    if kind == "unbind":
        return ber.unbind(message_id)
    if kind == "search":
        return ber.rootdse_search(message_id)
    if kind == "extended":
        return ber.extended_request(message_id, draw(st.sampled_from(["1.3.6.1.4.1.1466.20037", "1.2"])))
    if kind == "entry":
        return ber.message(message_id, ber.tlv(ber.SEARCH_RESULT_ENTRY, draw(st.binary(max_size=300))))
    op = draw(st.sampled_from(sorted(ber.FINAL_RESPONSES)))
    return ber.result(message_id, op, draw(st.integers(0, 2**16)), draw(text))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    pdu = bytearray(draw(messages()))
    for _ in range(draw(st.integers(0, 3))):
        pdu[draw(st.integers(0, len(pdu) - 1))] = draw(st.integers(0, 255))
    return bytes(pdu[: draw(st.integers(1, len(pdu)))]) + draw(st.binary(max_size=8))


@settings(max_examples=600, deadline=None)
@given(data=st.one_of(messages(), mutated()))
def test_the_usual_pdus_read_in_place_as_the_general_reading_reads_them(data: bytes) -> None:
    assert outcome(lambda: ber.envelope(data)) == outcome(lambda: ber._envelope(data))
    assert outcome(lambda: ber.peek(data)) == outcome(lambda: ber._peek(data))
    env = outcome(lambda: ber._envelope(data))
    if env != "BerError" and env.op == ber.BIND_REQUEST:
        assert outcome(lambda: ber.bind_request(data, env)) == outcome(lambda: ber._bind_request(data, env))


def test_a_login_is_read_in_place() -> None:
    """The bind, its answer and the unbind of a login are the PDUs read in place (the reading they
    would otherwise take is what these short cuts save)."""
    bind = ber.simple_bind(1, "uid=alice,ou=people,dc=example,dc=org", "secret")
    env = ber.envelope(bind)
    assert (env.message_id, env.op, env.op_end) == (1, ber.BIND_REQUEST, len(bind))
    assert ber.bind_request(bind, env) == ber.BindRequest(
        3, "uid=alice,ou=people,dc=example,dc=org", True, True
    )
    assert ber.peek(ber.result(1, ber.BIND_RESPONSE, ber.INVALID_CREDENTIALS)) == (
        14,
        1,
        ber.BIND_RESPONSE,
        49,
    )
    assert ber.envelope(ber.unbind(2)).op == ber.UNBIND_REQUEST
    assert ber.whole_pdu(bind)
    assert not ber.whole_pdu(bind[:-1])
    assert not ber.whole_pdu(bind + bind)
    assert not ber.whole_pdu(b"GET / HTTP/1.1\r\n")
