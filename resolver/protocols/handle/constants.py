"""Handle protocol numbers: op codes, op flags, envelope flags, versions and limits
(RFC 3652 §2.2; HNv9 ``AbstractMessage``/``Common``; handle.md §3.2–§3.3)."""

from __future__ import annotations

import enum


class OpCode(enum.IntEnum):
    #: Reserved (used by errors not tied to a request).
    RESERVED = 0
    #: Resolve a handle, optionally filtered by indexes and types.
    RESOLUTION = 1
    #: Ask for the answering site's HS_SITE record.
    GET_SITE_INFO = 2
    CREATE_HANDLE = 100
    DELETE_HANDLE = 101
    ADD_VALUE = 102
    REMOVE_VALUE = 103
    MODIFY_VALUE = 104
    LIST_HANDLES = 105
    LIST_NAS = 106
    CHALLENGE_RESPONSE = 200
    VERIFY_RESPONSE = 201
    HOME_NA = 300
    UNHOME_NA = 301
    LIST_HOMED_NAS = 302
    SESSION_SETUP = 400
    SESSION_TERMINATE = 401
    SESSION_EXCHANGEKEY = 402
    GET_NEXT_TXN_ID = 1000
    RETRIEVE_TXN_LOG = 1001
    DUMP_HANDLES = 1002
    BACKUP_SERVER = 1003
    #: IDIS SDK extension (teleinfo id-pointer-sdk), not CNRI.
    LOGIN_ID_SYSTEM = 2001


# Op flags (header bytes 8..11), handle.md §3.2.
FLAG_AUTHORITATIVE = 0x80000000
FLAG_CERTIFY = 0x40000000
FLAG_ENCRYPT = 0x20000000
FLAG_RECURSIVE = 0x10000000
FLAG_CACHE_CERTIFY = 0x08000000
FLAG_CONTINUOUS = 0x04000000
FLAG_KEEP_ALIVE = 0x02000000
FLAG_PUBLIC_ONLY = 0x01000000
FLAG_REQUEST_DIGEST = 0x00800000
FLAG_OVERWRITE = 0x00400000
FLAG_MINT = 0x00200000
FLAG_DO_NOT_REFER = 0x00100000

# Envelope flag bits (envelope bytes 2..3 as int2): bits 15..13; the low 2 bits of byte 2 and
# all of byte 3 carry the sender's suggested version (HNv9 extension).
ENV_COMPRESSED = 0x8000
ENV_ENCRYPTED = 0x4000
ENV_TRUNCATED = 0x2000

#: The protocol version this node speaks and suggests (HNv9 9.x: 2.11).
OUR_MAJOR = 2
OUR_MINOR = 11

ENVELOPE_SIZE = 20
HEADER_SIZE = 24
#: Largest message (header + body + credential) accepted, HNv9 ``MAX_MESSAGE_LENGTH``.
MAX_MESSAGE = 262144
#: A UDP packet carries at most 512 bytes including its envelope (handle.md §3.1).
UDP_PACKET = 512
UDP_PAYLOAD = UDP_PACKET - ENVELOPE_SIZE

# Request-digest hash codes (Common.HASH_CODE_*).  "Old format" is an int4-length-prefixed
# MD5 with no code byte: the high byte of the length, 0, doubles as the code.
HASH_MD5_OLD = 0
HASH_MD5 = 1
HASH_SHA1 = 2
HASH_SHA256 = 3
