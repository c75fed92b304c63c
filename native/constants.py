"""Numbers both hot-path twins share: limits of an identifier, the stored record layout v1,
the value limits and defaults a record packed from JSON obeys, the Handle message fields the fast
path reads, the UDP pump, the change log, the DNS fast path and the outcomes the fast paths
count (``tally``).

Restated here because ``native`` imports nothing of ours; ``tests/parity`` asserts they equal
the values in ``resolver.record``, ``resolver.values``, ``resolver.identifier``,
``resolver.protocols.handle.constants``, ``resolver.store.schema`` and
``resolver.errors.Outcome``, and ``tests/unit/test_native_dns.py`` the DNS ones against
``resolver.protocols.dns``.
"""

MAX_HANDLE = 2048  # bytes of UTF-8 (handle.md §1, Common.MAX_HANDLE_LENGTH)
MAX_PREFIX = 255
NA_PREFIX = b"0.NA"

LAYOUT_VERSION = 1
ALL_PUBLIC = 0x01
HEADER_SIZE = 12
DIR_SIZE = 16

PERM_PUBLIC_READ = 0x02
DEFAULT_PERMISSIONS = 0x0E  # admin read/write, public read (resolver.values)
DEFAULT_TTL = 86400
MAX_VALUES = 2048  # values of one record (resolver.values)
MAX_DATA_LENGTH = 262144  # bytes of one value's data
#: Types whose JSON ``data`` is typed (resolver.valuejson.data_to_json), compared after upper().
STRUCTURED_TYPES = ("HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_SITE.6", "HS_SITE.PREFIX",
                    "HS_NA_DELEGATE", "HS_PUBKEY")  # fmt: skip
VALUE_PERMS = 13  # offset of the permission byte inside an encoded value
VALUE_TYPE = 14  # offset of the type's int4 length
VALUE_MIN = 26  # fixed fields + empty type, data and reference list

# Handle protocol (resolver/protocols/handle/constants.py)
PROTOCOL_MAJOR = 2
PROTOCOL_MINOR = 11  # the version we speak and suggest
MAX_MESSAGE = 262144  # bytes after the envelope, either way
FLAG_REQUEST_DIGEST = 0x00800000
FLAG_PUBLIC_ONLY = 0x01000000  # unset, a request for values without public read is declined
FLAGS_NOT_FAST = 0x40000000 | 0x20000000  # certify, encrypt: the general path's
UDP_PACKET = 512  # longest single-packet UDP reply; longer ones are split (handle.md §3.1)

# UDP pump
PUMP_BATCH = 64  # datagrams read per UdpPump.run
MAX_DATAGRAM = 65536  # receive buffer per datagram: any UDP payload fits

# Change log (resolver/store/schema.py, format 2): key u64 big-endian txn id; value u8 action,
# u64 ms, u16 op, u16 key length, key, identity, digests
CHANGE_HEADER = 13
CHANGE_KEY_LENGTH = 11  # offset of the u16 key length
ACTION_HOME_PREFIX = 4
ACTION_UNHOME_PREFIX = 5
# Record cache: bytes counted per entry beyond its key and record (objects and table slots)
ENTRY_OVERHEAD = 160
# More changes than this since the last sync (or than entries held) → forget everything
RESYNC_LIMIT = 4096

# DNS fast path (resolver/protocols/dns/answers.py, responder.py, mapping.py)
DNS_TXT = 16
DNS_NAPTR = 35
DNS_URI = 256
DNS_MAX_RDATA = 65000  # answers.MAX_RDATA: larger record data is skipped
DNS_MAX_TTL = 0x7FFFFFFF  # RFC 2181 §8
DNS_MIN_UDP = 512  # RFC 1035 §4.2.1, RFC 6891 §6.2.5
DNS_MAX_TCP = 65535  # RFC 1035 §4.2.2
DNS_MAX_NAME = 255  # octets of a name in wire form (RFC 1035 §2.3.4)
DNS_MAX_APEX = DNS_MAX_NAME - 4  # mapping._apex: room for an identifier's labels
NAPTR_ORDER_BASE = 100
NAPTR_PREFERENCE = 10
TTL_ABSOLUTE = 1  # resolver.values: ttl is a UNIX expiry time
DNS_NOW_LIMIT = 1 << 62  # |now| bound: TTL arithmetic stays inside 64 bits

# Outcomes a fast path counts in its ``tally`` (resolver.errors.Outcome values; issue 7 §6)
TALLY_OK = "ok"  # Handle RC 1, REST responseCode 1, a DNS answer
TALLY_NOT_FOUND = "not_found"  # RC / responseCode 100
TALLY_VALUES_NOT_FOUND = "values_not_found"  # RC / responseCode 200
