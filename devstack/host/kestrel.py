"""What Kestrel and the host do to a request target before routing: path, query, display URL.

Copied behaviours (each pinned by a unit test naming it):
- Kestrel's `UrlDecoder.DecodeInPlace`: percent-escapes decoded as UTF-8, except `%2F`,
  which stays encoded so it can never become a path separator; escapes that are not valid
  UTF-8 are kept literally; `%00` is a 400.
- Kestrel's `PathNormalizer.RemoveDotSegments` (RFC 3986 5.2.4), applied *after* decoding,
  so `%2e%2e` is removed like `..`.
- ASP.NET Core's query parsing (`+` is a space, names case-insensitive) and the host's
  `ToRpcHttp`, which hands the worker each name once, repeated values joined with `,`, and
  drops empty values.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_HEX = frozenset(b"0123456789abcdefABCDEF")
_SLASH = 0x2F


class BadRequest(ValueError):
    """A request target Kestrel answers with 400."""


def _escape_at(raw: bytes, i: int, keep: frozenset[int]) -> tuple[int, int]:
    """(byte value, index after the escape) for `%XX` at i, or (-1, i + 1) if it is not decoded."""
    if i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
        value = int(raw[i + 1:i + 3], 16)
        if value not in keep:
            return value, i + 3
    return -1, i + 1


def _utf8_length(first: int) -> int:
    """How many bytes a UTF-8 sequence starting with `first` has; 0 if it cannot start one."""
    for length, mask, lead in ((1, 0x80, 0x00), (2, 0xE0, 0xC0), (3, 0xF0, 0xE0), (4, 0xF8, 0xF0)):
        if first & mask == lead:
            return length
    return 0


def percent_decode(text: str, keep: frozenset[int] = frozenset(), nul_is_error: bool = False) -> str:
    """Decode `%XX` runs that form valid UTF-8; copy everything else (and bytes in `keep`) as is."""
    raw, out, i = text.encode("utf-8"), bytearray(), 0
    while i < len(raw):
        first, j = _escape_at(raw, i, keep) if raw[i] == 0x25 else (-1, i + 1)
        if first < 0:
            out.append(raw[i])
            i = j
            continue
        if first == 0 and nul_is_error:
            raise BadRequest("the path contains a null character (%00)")
        sequence, k = [first], j
        while len(sequence) < _utf8_length(first):
            following, after = _escape_at(raw, k, keep) if k < len(raw) and raw[k] == 0x25 else (-1, k)
            if following < 0 or following & 0xC0 != 0x80:
                break
            sequence.append(following)
            k = after
        try:
            if len(sequence) != _utf8_length(first):
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "incomplete")
            bytes(sequence).decode("utf-8")  # refuses overlong forms, surrogates, > U+10FFFF
            out.extend(sequence)
        except UnicodeDecodeError:
            out.extend(raw[i:k])  # not valid UTF-8: the escapes are kept literally
        i = k
    return out.decode("utf-8", errors="replace")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path, as Kestrel's `PathNormalizer` does."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/" + "/".join(out)


def request_path(raw_path: str) -> str:
    """Kestrel's `HttpRequest.Path` for a raw origin-form path."""
    return remove_dot_segments(percent_decode(raw_path or "/", keep=frozenset({_SLASH}), nul_is_error=True))


def split_target(target: str) -> tuple[str, str]:
    """(raw path, raw query) of an origin-form or absolute-form request target."""
    if re.search(r"[^\x21-\x7e]|#", target):
        raise BadRequest("the request target contains a character that is not allowed (non-ASCII, "
                         "control, space or '#'); percent-encode it")
    absolute = re.match(r"(?i)https?://[^/?]*", target)
    if absolute:
        target = target[absolute.end():] or "/"
        if target.startswith("?"):
            target = "/" + target
    if not target.startswith("/"):
        raise BadRequest("the request target must be an absolute path (origin-form)")
    path, _, query = target.partition("?")
    return path, query


def query_params(raw_query: str) -> dict[str, str]:
    """The query as the worker receives it: names case-insensitive, repeats joined, empties dropped."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name, value = (percent_decode(part.replace("+", " ")) for part in (name, value))
        merged.setdefault(name.lower(), (name, []))[1].append(value)
    joined = {name: ",".join(values) for name, values in merged.values()}
    return {name: value for name, value in joined.items() if value}


def first_query_value(raw_query: str, name: str) -> str | None:
    """`Request.Query[name].First()`: the first value of a case-insensitive name, even if empty."""
    for pair in raw_query.split("&"):
        key, sep, value = pair.partition("=")
        if percent_decode(key.replace("+", " ")).lower() == name.lower():
            return percent_decode(value.replace("+", " ")) if sep else ""
    return None


def display_path(path: str) -> str:
    """`PathString.ToUriComponent`: characters not allowed in a path encoded, existing `%XX` kept."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", path)
    return "".join(p if i % 2 else quote(p, safe="/:@!$&'()*+,;=-._~") for i, p in enumerate(parts))
