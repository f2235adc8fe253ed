"""Make a client's raw line safe to show on anyone's terminal.

Every step is a pure function on bytes or str so it can be fuzzed. The order is
the contract's: telnet IAC sequences, then UTF-8 decoding with replacement,
then whole escape sequences and any control character left over but BS and
DEL, which last erase the character before them.
"""

import re

IAC = 0xFF
_SB = 0xFA
_SE = 0xF0
_WILL, _DONT = 0xFB, 0xFE

# CSI: ESC [ parameters/intermediates, then a final byte (absent if cut short).
# OSC: ESC ] ... up to BEL, ESC \ or the end of the line.
# Any other ESC x pair, or a lone ESC; an ESC never swallows a following ESC
# so that ``ESC ESC [31m`` still loses its whole CSI.
_ESCAPES = re.compile(
    r"\x1b(?:\[[\x20-\x3f]*[\x40-\x7e]?|\].*?(?:\x07|\x1b\\|\Z)|[^\x1b]?)",
    re.DOTALL,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Removed outright: every control character but TAB and the two erasers.
_SILENT = re.compile(r"[\x00-\x07\x0a-\x1f\x80-\x9f]")
# BS, and DEL: what a terminal's backspace key sends to a telnet client in character mode.
_ERASERS = "\x08\x7f"


def strip_telnet(data: bytes) -> bytes:
    """Drop telnet commands, option negotiation and subnegotiation (RFC 854).

    ``IAC IAC`` is the RFC's escape for a literal 0xFF data byte and is kept as
    one; it then decodes to U+FFFD like any other invalid UTF-8.
    """
    if IAC not in data:
        return data
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        found = data.find(IAC, pos)
        if found < 0:
            out += data[pos:]
            break
        out += data[pos:found]
        if found + 1 >= end:
            break
        command = data[found + 1]
        if command == IAC:
            out.append(IAC)
            pos = found + 2
        elif command == _SB:
            pos = _end_of_subnegotiation(data, found + 2)
        elif _WILL <= command <= _DONT:
            pos = found + 3
        else:
            pos = found + 2
    return bytes(out)


def _end_of_subnegotiation(data: bytes, pos: int) -> int:
    """Where ``IAC SB`` payload starting at ``pos`` ends, just past its ``IAC SE``.

    The payload is walked an IAC pair at a time, so an escaped 0xFF data byte
    (``IAC IAC``) followed by 0xF0 is not taken for the end. Unterminated: the
    rest of the line.
    """
    while True:
        mark = data.find(IAC, pos)
        if mark < 0 or mark + 1 >= len(data):
            return len(data)
        pos = mark + 2
        if data[mark + 1] == _SE:
            return pos


def strip_controls(text: str) -> str:
    """Remove escape sequences whole and every other C0 (but TAB) and C1; then apply BS and DEL.

    The erasers act last, on what is left to see: backspacing over a
    character typed after an invisible control erases that character.
    """
    if _CONTROLS.search(text) is None:
        return text
    return erase(_SILENT.sub("", _ESCAPES.sub("", text)))


def erase(text: str) -> str:
    """Let each BS or DEL erase the character before it, if any, as a terminal would.

    A character is a code point, so one backspace takes back a whole UTF-8
    sequence, however many bytes it had on the wire. The erasers go too.
    """
    if _ERASERS[0] not in text and _ERASERS[1] not in text:
        return text
    kept: list[str] = []
    for char in text:
        if char in _ERASERS:
            if kept:
                kept.pop()
        else:
            kept.append(char)
    return "".join(kept)


def sanitize(raw: bytes) -> str:
    """The text a raw line stands for, with nothing that could drive a terminal."""
    return strip_controls(strip_telnet(raw).decode("utf-8", "replace"))
