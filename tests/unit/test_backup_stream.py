"""VerifyingStream: exact reads, per-part and composite SHA-256, size and MD5 checks."""

import base64
import hashlib
import os

import pytest

from crosscloud.backup.stream import VerifyingStream
from crosscloud.errors import IntegrityError


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chunks_of(data: bytes, size: int):
    return iter([data[i:i + size] for i in range(0, len(data), size)])


def drain(stream: VerifyingStream, read_size: int) -> bytes:
    out = []
    while piece := stream.read(read_size):
        out.append(piece)
    return b"".join(out)


@pytest.mark.parametrize(("chunk", "read_size"), [(1, 7), (3, 10), (10, 10), (64, 5), (1000, 1000)])
def test_reads_are_exact_and_parts_hash_at_part_boundaries(chunk, read_size):
    data = os.urandom(95)
    stream = VerifyingStream(chunks_of(data, chunk), key="k", size=len(data), part_size=10)
    got = drain(stream, read_size)
    assert got == data
    expected_parts = [b64(hashlib.sha256(data[i:i + 10]).digest()) for i in range(0, 95, 10)]
    assert stream.part_sha256() == expected_parts
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(data[i:i + 10]).digest()
                                            for i in range(0, 95, 10))).digest())
    assert stream.matches(composite)
    assert stream.matches(f"{composite}-10")
    assert not stream.matches(f"{composite}-9")  # wrong part count
    assert not stream.matches(b64(hashlib.sha256(data).digest()))  # a multipart upload is never "whole"


def test_reads_return_exactly_what_was_asked_until_the_end():
    data = os.urandom(25)
    stream = VerifyingStream(chunks_of(data, 4), key="k", size=25, part_size=10)
    assert [len(stream.read(10)), len(stream.read(10)), len(stream.read(10)), len(stream.read(10))] == [10, 10, 5, 0]


def test_single_part_object_matches_whole_digest():
    data = b"hello world"
    stream = VerifyingStream(chunks_of(data, 3), key="k", size=len(data), part_size=1024,
                             content_md5=hashlib.md5(data, usedforsecurity=False).digest())
    assert stream.read() == data
    assert stream.part_sha256() == [b64(hashlib.sha256(data).digest())]
    assert stream.matches(b64(hashlib.sha256(data).digest()))


def test_empty_object_has_the_digest_of_nothing():
    md5 = hashlib.md5(b"", usedforsecurity=False).digest()
    stream = VerifyingStream(iter([b""]), key="k", size=0, part_size=10, content_md5=md5)
    assert stream.read() == b""
    assert stream.finished
    assert stream.part_sha256() == [b64(hashlib.sha256(b"").digest())]


def test_short_source_fails_at_the_end():
    stream = VerifyingStream(iter([b"abc"]), key="k", size=5, part_size=10)
    with pytest.raises(IntegrityError, match="read 3 bytes of 'k', expected 5"):
        stream.read(100)


def test_long_source_fails_as_soon_as_it_overflows():
    stream = VerifyingStream(iter([b"abcdef"]), key="k", size=5, part_size=10)
    with pytest.raises(IntegrityError, match="more than the 5 bytes"):
        stream.read(100)


def test_md5_mismatch_fails_before_the_uploader_sees_the_end():
    data = b"payload"
    stream = VerifyingStream(iter([data]), key="k", size=len(data), part_size=10,
                             content_md5=hashlib.md5(b"other", usedforsecurity=False).digest())
    with pytest.raises(IntegrityError, match="Content-MD5"):
        stream.read()


def test_digests_are_refused_before_the_end():
    stream = VerifyingStream(iter([b"abc"]), key="k", size=3, part_size=10)
    stream.read(2)
    with pytest.raises(IntegrityError, match="not read to the end"):
        stream.part_sha256()


def test_progress_callback_counts_bytes():
    seen = []
    stream = VerifyingStream(chunks_of(b"x" * 30, 7), key="k", size=30, part_size=10, on_bytes=seen.append)
    drain(stream, 8)
    assert sum(seen) == 30
