"""SIA DC-09 framing, pure: messages to a receiving centre and the centre's answers (ACK, NAK, DUH, RSP).

A message is `<LF><crc><0LLL>"<id>"<seq>R<rcvr>L<pref>#<acct>[<data>]<_HH:MM:SS,MM-DD-YYYY><CR>`: the CRC
(CRC-16/ARC, 4 hex digits) and the length (4 hex digits) cover everything from the first quote to the
timestamp. Encrypted (`"*<id>"`), everything after `[` (the data, its closing `]` and the timestamp) is
AES-CBC with a zero IV under the account's 128/192/256-bit key, preceded by pad characters and `|` so that
it fills whole blocks, and written as hex.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAX_SEQUENCE = 9999  # sequence numbers run 0001..9999, then wrap to 0001
_ZERO_IV = bytes(16)
_PAD_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # never '|', '[' or ']'


class DecodeError(ValueError):
    """A receiver's answer that is not a DC-09 response (bad CRC, length, shape or decryption)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Who the message is for and from: receiver number, account prefix (line) and account, each hex."""

    account: str
    line: str = "0"
    receiver: str | None = None

    def header(self) -> str:
        return f"{'' if self.receiver is None else 'R' + self.receiver.upper()}L{self.line.upper()}#{self.account.upper()}"


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005 reflected, initial 0), as DC-09 specifies."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def timestamp(epoch_s: float) -> str:
    """The DC-09 timestamp `_HH:MM:SS,MM-DD-YYYY` (UTC)."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("_%H:%M:%S,%m-%d-%Y")


def parse_timestamp(text: str) -> float:
    """Epoch seconds of a DC-09 timestamp (with or without its leading `_`); ValueError if it is none."""
    return datetime.strptime(text.lstrip("_"), "%H:%M:%S,%m-%d-%Y").replace(tzinfo=timezone.utc).timestamp()


def encrypt(key: bytes, plain: str, pad: str | None = None) -> str:
    """`plain` (ASCII) behind pad characters and `|`, to whole AES blocks, encrypted (CBC, zero IV), as upper-case hex."""
    if pad is None:
        pad = "".join(_PAD_CHARS[b % len(_PAD_CHARS)] for b in os.urandom(-(len(plain) + 1) % 16))
    data = f"{pad}|{plain}".encode("ascii")
    if len(data) % 16:
        raise ValueError(f"pad of {len(pad)} characters leaves {len(data) % 16} bytes past a block")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str:
    """The plain text of an encrypted DC-09 field (pad included); DecodeError if it is not whole hex blocks."""
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        raise DecodeError("encrypted field is not hex") from None
    if not data or len(data) % 16:
        raise DecodeError(f"encrypted field of {len(data)} bytes is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).decryptor()
    return (decryptor.update(data) + decryptor.finalize()).decode("ascii", "replace")


def frame(token: str, sequence: int, route: Route, data: str, at: float, key: bytes | None = None, *, pad: str | None = None) -> bytes:
    """One DC-09 message: `token` SIA-DCS, ADM-CID or NULL; `data` what goes inside `[...]` (may be empty);
    `at` the transmitter's time (epoch seconds, already corrected by the receiver's NAKs)."""
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {sequence} is not 0..{MAX_SEQUENCE}")
    head = f'"{"*" if key else ""}{token}"{sequence:04d}{route.header()}['
    body = encrypt(key, f"{data}]{timestamp(at)}", pad) if key else f"{data}]{timestamp(at)}"
    return _wrap(head + body)


def _wrap(message: str) -> bytes:
    raw = message.encode("ascii")
    if len(raw) > 0xFFF:
        raise ValueError(f"DC-09 message of {len(raw)} bytes is longer than 4095")
    return b"\n%04X0%03X" % (crc16(raw), len(raw)) + raw + b"\r"


def next_sequence(sequence: int) -> int:
    """The sequence number after this one (9999 wraps to 0001)."""
    return sequence % MAX_SEQUENCE + 1


class Answer(StrEnum):
    ACK = "ACK"  # taken
    NAK = "NAK"  # refused, usually for its timestamp: the receiver's own time comes with it
    DUH = "DUH"  # not understood: sending it again will not help
    RSP = "RSP"  # taken, with a response (e.g. a key change) for the transmitter


@dataclass(frozen=True, slots=True)
class Response:
    """A receiver's answer to one message."""

    answer: Answer
    sequence: int
    account: str | None
    encrypted: bool
    receiver_time: float | None  # the receiver's clock (NAK always, encrypted ACK), for resynchronising ours

    def acknowledges(self, sequence: int) -> bool:
        return self.answer in (Answer.ACK, Answer.RSP) and self.sequence == sequence


_RESPONSE = re.compile(r'"(?P<star>\*?)(?P<answer>ACK|NAK|DUH|RSP)"(?P<seq>\d{4})(?P<route>[^\[]*)\[(?P<rest>.*)', re.S)
_TIMESTAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d\d\d\d)")


def parse_response(raw: bytes, key: bytes | None = None) -> Response:
    """Decode a receiver's answer (LF ... CR framing, CRC and length checked); DecodeError saying what is wrong."""
    text = raw.strip(b"\r\n\x00 ").decode("ascii", "replace")
    if len(text) < 8:
        raise DecodeError(f"answer {text!r} is too short for a DC-09 response")
    crc_text, length_text, message = text[:4], text[4:8], text[8:]
    try:
        crc, length = int(crc_text, 16), int(length_text, 16)
    except ValueError:
        raise DecodeError(f"answer {text[:40]!r} does not start with a CRC and a length") from None
    if length != len(message):
        raise DecodeError(f"answer says {length} bytes, has {len(message)}")
    if crc != crc16(message.encode("ascii", "replace")):
        raise DecodeError(f"answer CRC {crc_text} does not match its content")
    match = _RESPONSE.match(message)
    if not match:
        raise DecodeError(f"answer {message[:60]!r} is not ACK, NAK, DUH or RSP")
    account = re.search(r"#([0-9A-Fa-f]+)", match["route"])
    rest = match["rest"]
    encrypted = bool(match["star"])
    if encrypted:
        if key is None:
            raise DecodeError("encrypted answer but no key for this account")
        hex_tail = rest[len(rest.rstrip("0123456789ABCDEFabcdef")):]
        rest = decrypt(key, hex_tail[len(hex_tail) % 32:])  # whole blocks: a response qualifier may come before them
    stamp = _TIMESTAMP.search(rest)
    return Response(
        answer=Answer(match["answer"]), sequence=int(match["seq"]), account=account[1].upper() if account else None,
        encrypted=encrypted, receiver_time=parse_timestamp(stamp[1]) if stamp else None,
    )
