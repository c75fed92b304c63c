"""The LMDB environment's layout: named databases, key and value formats, FORMAT_VERSION.

Every line that depends on a key layout says ``# KEY_FORMAT``.  Changing any format here
means bumping ``FORMAT_VERSION``; a store of another version is refused at open.
"""

import struct

#: Version of everything below.  Stored in ``meta`` under ``format_version`` as ASCII digits.
FORMAT_VERSION = 1

#: ``records``: key = normalised identifier (ASCII-upper-cased UTF-8, resolver.identifier)
#: # KEY_FORMAT; value = a stored record (layout v1, resolver.record).
RECORDS = b"records"
#: ``prefixes``: key = normalised prefix without ``0.NA/`` (``88.118.8``) # KEY_FORMAT;
#: value = the stored record of the prefix handle ``0.NA/<prefix>``.  Presence = homed here.
PREFIXES = b"prefixes"
#: ``changes``: key = u64 big-endian transaction id, monotonic from 1 # KEY_FORMAT;
#: value = CHANGE header (u8 action, u64 time in ms since 1970 UTC) + the affected key.
#: Every write to ``records`` or ``prefixes`` appends its entry in the same transaction: the
#: workers' record caches (native.RecordCache) forget changed keys by reading this log.
CHANGES = b"changes"
#: ``meta``: key = ASCII name; value = ASCII or raw bytes (format_version, created, node_id).
META = b"meta"

ALL_DATABASES = (RECORDS, PREFIXES, CHANGES, META)

TXN_ID = struct.Struct(">Q")  # KEY_FORMAT
CHANGE = struct.Struct(">BQ")

#: Change actions, numbered as Handle.net transactions (handle.md §6).
ACTION_CREATE = 1
ACTION_DELETE = 2
ACTION_UPDATE = 3
ACTION_HOME_PREFIX = 4
ACTION_UNHOME_PREFIX = 5

META_FORMAT_VERSION = b"format_version"
META_CREATED = b"created"
