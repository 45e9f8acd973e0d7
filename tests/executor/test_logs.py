"""Line framing, masking and capping of step output (runner/executor/logs.py)."""

from __future__ import annotations

from runner.executor.logs import MASK, SecretMasker, StepLog


def feed_all(log: StepLog, chunks) -> list[str]:
    lines = []
    for chunk in chunks:
        lines += log.feed(chunk)
    return lines + log.close()


def test_lines_are_framed_across_chunks_and_the_last_partial_line_is_flushed():
    log = StepLog()
    assert log.feed(b"al") == []
    assert log.feed(b"pha\nbeta\r\ngam") == ["alpha", "beta"]
    assert log.close() == ["gam"]


def test_a_utf8_character_split_across_chunks_survives():
    assert feed_all(StepLog(), [b"caf\xc3", b"\xa9\n"]) == ["café"]


def test_secret_split_across_every_possible_border_is_masked():
    secret = "pa55-w0rd-xyz"
    text = f"user=me pass={secret} again {secret}\n".encode()
    for cut in range(1, len(text)):
        log = StepLog(SecretMasker([secret]))
        assert feed_all(log, [text[:cut], text[cut:]]) == [f"user=me pass={MASK} again {MASK}"], cut


def test_a_multiline_secret_is_masked_line_by_line_and_longest_first():
    masker = SecretMasker(["-----KEY-----\nAAAABBBB\n-----END-----", "AAAA", ""])
    assert feed_all(StepLog(masker), [b"-----KEY-----\nAAAABBBB\nx AAAA\n"]) == [MASK, MASK, f"x {MASK}"]


def test_long_lines_are_broken_without_cutting_a_secret():
    secret = "SECRETVALUE"
    log = StepLog(SecretMasker([secret]), max_line=16)
    lines = feed_all(log, [b"a" * 20 + secret[:4].encode(), secret[4:].encode() + b"b" * 40 + b"\n"])
    assert secret not in "".join(lines) and MASK in "".join(lines)
    assert "".join(lines).replace(MASK, secret) == "a" * 20 + secret + "b" * 40
    assert all(len(line) <= log.max_line for line in lines)


def test_cap_keeps_the_first_bytes_and_says_how_much_was_dropped():
    log = StepLog(cap=10)
    lines = feed_all(log, [b"12345\n", b"67890abcdef\n", b"more\n"])
    assert lines[:2] == ["12345", "6789"]
    assert log.dropped == 13 and "(13 bytes)" in lines[-1] and "capped" in lines[-1]
    assert len(lines) == 3


def test_the_cap_never_shows_the_start_of_a_secret_it_cut():
    secret = "hunter2-value"
    for kept in range(1, len(secret)):  # the cap falls inside the secret, after `kept` characters
        log = StepLog(SecretMasker([secret]), cap=len("token=") + kept)
        first, marker = feed_all(log, [b"token=" + secret.encode() + b"\nmore\n"])
        assert first == "token=" + MASK and "capped" in marker, (kept, first)
    # Text that merely ends like a secret's start is cut too, but nothing else is lost.
    log = StepLog(SecretMasker([secret]), cap=len("plain h"))
    assert feed_all(log, [b"plain hello\n"])[0] == "plain " + MASK
