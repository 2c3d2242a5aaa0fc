"""spool/_sse.py: the SDK's event-stream parser, fed whole and byte by byte (every CR, LF and
CRLF, and the BOM, split across chunks)."""

from __future__ import annotations

from spool._sse import SSEParser


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[tuple[str, str, str]]:
    return [(m.id, m.event, m.data) for chunk in chunks for m in parser.feed(chunk)]


def test_the_parser_follows_the_whatwg_rules() -> None:
    stream = (b"\xef\xbb\xbfretry: 150\r\n\r\n: keepalive\n\n"
              b"id: 1\revent: a\rdata: x\rdata:y\r\rdata\n\n"
              b"id: 2\r\nevent: b\r\ndata:  two\r\n: a comment inside\r\nfoo: ignored\r\n\r\n"
              b"id: 3\x00\nretry: 1x\nevent: c\ndata: {}\n\n"
              b"event: nothing\n\n"
              b"id: 4\ndata: \xff\n\nid: 5\ndata: never dispatched\n")
    expected = [("1", "a", "x\ny"), ("1", "message", ""), ("2", "b", " two"),
                ("2", "c", "{}"), ("4", "message", "\ufffd")]
    whole = SSEParser()
    assert feed_all(whole, [stream]) == expected
    assert whole.retry == 150
    assert whole.last_comment == "a comment inside"
    # Byte by byte: every CR/LF and CRLF split across chunks, the BOM split too.
    one_by_one = SSEParser()
    assert feed_all(one_by_one, [stream[i:i + 1] for i in range(len(stream))]) == expected
    assert one_by_one.retry == 150
    assert feed_all(SSEParser(), [b"data: \xef\xbb\xbf kept\n\n"]) == [
        ("", "message", "\ufeff kept")]  # only a leading BOM is dropped
