# The SST format's constants (docs/format.md), one definition each: the table
# writer (lsmkv.core.builder), the reader (lsmkv.core.table, which also exports
# them to Python for lsmkv.engine.repair) and nothing else spell them out.
#
#   file    = blocks ... | footer (FOOTER_SIZE bytes, ending in the magic b"LSMKVSST")
#   block   = contents as stored | trailer (TRAILER_SIZE bytes: type u8, crc32c u32 LE)
cdef enum:
    FOOTER_SIZE = 80
    TRAILER_SIZE = 5
    FORMAT_VERSION = 2         # the newest version this lsmkv writes and reads
    FORMAT_VERSION_PLAIN = 1   # a table without range tombstones or merge operands (as before them)
    BLOCK_RAW = 0
    BLOCK_ZSTD = 1
    BLOCK_ZSTD_DICT = 2      # zstd with the table's own dictionary (the dictionary block)

cdef extern from *:
    """
    static const char lsmkv_sst_magic[9] = "LSMKVSST";
    """
    const char* SST_MAGIC "lsmkv_sst_magic"     # the footer's last 8 bytes (no NUL)
