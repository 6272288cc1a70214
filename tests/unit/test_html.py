"""The sanitiser keeps exactly the HTML the Matrix spec allows."""

from __future__ import annotations

import pytest

from matrix_stack.shared.matrix.content import edit, message, reply, thread_reply
from matrix_stack.shared.matrix.html import html_to_text, sanitize


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<b>bold</b><script>alert(1)</script>", "<b>bold</b>"),
        ("<style>p{}</style><p>x</p>", "<p>x</p>"),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="data:text/html,hi">x</a>', "<a>x</a>"),
        (
            '<a href="https://matrix.to/#/@a:b" onclick="x()" rel="nofollow">u</a>',
            '<a href="https://matrix.to/#/@a:b">u</a>',
        ),
        ('<a href="mailto:a@example.org">m</a>', '<a href="mailto:a@example.org">m</a>'),
        ('<a href="mxc://server/media">m</a>', "<a>m</a>"),
        ('<img src="http://evil.example/x.png" alt="x">', '<img alt="x">'),
        (
            '<img src="mxc://server/abc" width="20" height="x" alt="a">',
            '<img src="mxc://server/abc" width="20" alt="a">',
        ),
        (
            '<span data-mx-color="#ff0000" style="color:red" data-mx-spoiler="why">s</span>',
            '<span data-mx-color="#ff0000" data-mx-spoiler="why">s</span>',
        ),
        (
            '<font color="red" data-mx-bg-color="#00ff00">f</font>',
            '<font color="#FF0000" data-mx-bg-color="#00ff00">f</font>',
        ),
        ('<font color="rgb(1,2,3)" data-mx-color="nope">f</font>', "<font>f</font>"),
        ('<code class="language-python">x</code>', '<code class="language-python">x</code>'),
        ('<code class="evil">x</code>', "<code>x</code>"),
        ('<div onmouseover="x">d</div><iframe src="https://x"></iframe>', "<div>d</div>"),
        ("<table><tr><td>c</td></tr></table>", "<table><tbody><tr><td>c</td></tr></tbody></table>"),
        ("<!-- secret --><p>x</p>", "<p>x</p>"),
        ("<details><summary>s</summary>d</details>", "<details><summary>s</summary>d</details>"),
    ],
)
def test_sanitize(dirty: str, clean: str) -> None:
    assert sanitize(dirty) == clean


def test_html_to_text_is_readable() -> None:
    text = html_to_text(
        "<h1>Alert</h1><p>Disk <b>full</b> on<br>node-1 &amp; node-2</p>"
        "<ul><li>one</li><li>two</li></ul><ol start='3'><li>three</li></ol>"
        "<script>alert(1)</script>"
    )
    assert text == "Alert\nDisk full on\nnode-1 & node-2\n• one\n• two\n3. three"
    assert "<" not in text


def test_message_content() -> None:
    content = message("plain", "<b>rich</b><script>x</script>", mention_users=["@a:b", "@a:b"])
    assert content == {
        "msgtype": "m.notice",
        "body": "plain",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>rich</b>",
        "m.mentions": {"user_ids": ["@a:b"]},
    }
    assert message("only text", msgtype="m.text") == {
        "msgtype": "m.text",
        "body": "only text",
        "m.mentions": {},
    }
    assert message(html="<p>a &lt;b&gt;</p>")["body"] == "a <b>"
    with pytest.raises(ValueError, match="body or html"):
        message()


def test_relations() -> None:
    new = message("resolved", "<b>resolved</b>")
    edited = edit(new, "$orig")
    assert edited["body"] == "* resolved"
    assert edited["formatted_body"] == "* <b>resolved</b>"
    assert edited["m.new_content"] == new
    assert edited["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert reply(new, "$e")["m.relates_to"] == {"m.in_reply_to": {"event_id": "$e"}}
    threaded = thread_reply(new, "$root", latest_event_id="$last")
    assert threaded["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$last"},
    }
