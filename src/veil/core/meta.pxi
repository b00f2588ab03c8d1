# Included by _core.pyx. The File Meta (PS3.10 7.1): read to learn how the data set that follows is encoded
# (Meta, read_meta), and written anew for an output (build_meta); inflating a deflated data set.

# veil's Implementation Class UID (PS3.7 D.3.3.2): a 2.25 UID made once from a fixed UUID.
IMPLEMENTATION_CLASS_UID = "2.25.167433902655210327398716356372095512893"
IMPLEMENTATION_VERSION_NAME = ("VEIL_" + _VEIL_VERSION)[:16]

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"

cdef bytes IMPLEMENTATION_CLASS_UID_B = IMPLEMENTATION_CLASS_UID.encode("ascii")
cdef bytes IMPLEMENTATION_VERSION_NAME_B = IMPLEMENTATION_VERSION_NAME.encode("ascii")

# Inflated data sets larger than this, or this many times the deflated size, are refused (zip bombs).
cdef Py_ssize_t INFLATE_LIMIT = 1 << 30
cdef Py_ssize_t INFLATE_RATIO = 1000


cdef class Meta:
    """What the File Meta (or its absence) says about the data set that follows."""


cdef dict _TEXT_CACHE = {}


cdef str _text(const uint8_t* p, Py_ssize_t n):
    """A stripped ASCII value; UIDs repeat across files, so decoded strings are interned in a small cache."""
    while n > 0 and (p[n - 1] == 0 or p[n - 1] == 32):
        n -= 1
    while n > 0 and p[0] == 32:
        p += 1
        n -= 1
    key = PyBytes_FromStringAndSize(<const char*>p, n)
    value = _TEXT_CACHE.get(key)
    if value is None:
        value = key.decode("ascii", "replace")
        if len(_TEXT_CACHE) < 4096:
            _TEXT_CACHE[key] = value
    return value


cdef bint looks_explicit(const uint8_t[::1] data, Py_ssize_t pos):
    cdef uint16_t vr
    if pos + 6 > data.shape[0]:
        return False
    vr = (data[pos + 4] << 8) | data[pos + 5]
    return vr_is_known(vr)


cdef bint _implicit_plausible(const uint8_t[::1] data, Py_ssize_t pos):
    """An implicit VR header whose 32-bit length fits the file (to tell it from an explicit one)."""
    cdef uint32_t length
    if pos + 8 > data.shape[0]:
        return False
    length = rd32(&data[pos + 4], True)
    return length == UNDEFINED or length <= <uint32_t>(data.shape[0] - pos - 8)


cdef Meta _read_meta(const uint8_t[::1] data, str path):
    cdef Py_ssize_t n = data.shape[0], pos, vlen
    cdef uint32_t tag
    cdef uint16_t vr, group
    cdef Meta meta = Meta.__new__(Meta)
    meta.sop_class_uid = ""
    meta.sop_instance_uid = ""
    ts = ""
    if n >= 132 and data[128] == 68 and data[129] == 73 and data[130] == 67 and data[131] == 77:
        pos = 132
        meta.had_meta = True
    elif n >= 8 and data[0] == 2 and data[1] == 0 and looks_explicit(data, 0):
        pos = 0  # File Meta without the preamble
        meta.had_meta = True
    else:
        pos = 0
        meta.had_meta = False
    if meta.had_meta:
        while pos + 8 <= n:
            group = data[pos] | (data[pos + 1] << 8)
            if group != 2:
                break
            tag = rdtag(&data[pos], True)
            vr = (data[pos + 4] << 8) | data[pos + 5]
            if not vr_is_known(vr):
                raise MalformedDicom(path, pos, f"bad VR in File Meta ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if vr_is_long(vr):
                if pos + 12 > n:
                    raise MalformedDicom(path, pos, "truncated File Meta")
                vlen = rd32(&data[pos + 8], True)
                pos += 12
            else:
                vlen = rd16(&data[pos + 6], True)
                pos += 8
            if vlen == UNDEFINED or vlen > n - pos:
                raise MalformedDicom(path, pos, "File Meta element runs past the end")
            if tag == 0x00020010:
                ts = _text(&data[pos], vlen)
            elif tag == 0x00020002:
                meta.sop_class_uid = _text(&data[pos], vlen)
            elif tag == 0x00020003:
                meta.sop_instance_uid = _text(&data[pos], vlen)
            pos += vlen
        if pos + 8 > n and pos != n:
            raise MalformedDicom(path, pos, "truncated after File Meta")
    else:
        if n < 8:
            raise MalformedDicom(path, 0, "not a DICOM file (too short)")
        group = data[0] | (data[1] << 8)
        if group not in (0x0000, 0x0008, 0x0010):
            if (data[0] << 8 | data[1]) == 0x0008 and looks_explicit(data, 0):
                ts = TS_EXPLICIT_BE  # a big endian data set with no File Meta
            else:
                raise MalformedDicom(path, 0, "not a DICOM file (no DICM prefix and no data set start)")
    if ts and (not ts.isascii() or ts.strip("0123456789.") or len(ts) > 64):
        raise MalformedDicom(path, 0, "the File Meta's transfer syntax is not a valid UID")
    meta.dataset_offset = pos
    meta.deflated = False
    meta.little = True
    if ts == TS_IMPLICIT_LE:
        meta.explicit = False
    elif ts == TS_EXPLICIT_BE:
        meta.explicit = True
        meta.little = False
    elif ts == TS_DEFLATED_LE:
        meta.explicit = True
        meta.deflated = True
    elif ts:
        meta.explicit = True
    else:
        # No transfer syntax: read as the data says (PS3.5 A.1 default is Implicit VR Little Endian).
        meta.explicit = looks_explicit(data, pos)
        ts = TS_EXPLICIT_LE if meta.explicit else TS_IMPLICIT_LE
    if not meta.deflated and pos < n and meta.little:
        # A File Meta that names the wrong VR encoding for the data set (seen in the wild): follow the data,
        # as pydicom does.
        if meta.explicit and not looks_explicit(data, pos) and _implicit_plausible(data, pos):
            if ts != TS_EXPLICIT_LE:
                raise MalformedDicom(path, pos, f"transfer syntax {ts} is explicit VR but the data set is "
                                                "implicit VR")
            meta.explicit = False
            ts = TS_IMPLICIT_LE
        elif not meta.explicit and looks_explicit(data, pos) and ts == TS_IMPLICIT_LE and \
                not _implicit_plausible(data, pos):
            meta.explicit = True
            ts = TS_EXPLICIT_LE
    meta.transfer_syntax = ts
    return meta


def read_meta(const uint8_t[::1] data not None, str path=""):
    """Parses the preamble and File Meta group (PS3.10 7.1) and decides how the data set is encoded."""
    return _read_meta(data, path)


def inflate(data, str path="", Py_ssize_t offset=0):
    """Inflates a Deflated Explicit VR Little Endian data set (raw deflate, RFC 1951), bounded in size."""
    limit = min(INFLATE_LIMIT, max(64 << 20, len(data) * INFLATE_RATIO))
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, limit)  # any buffer: the (half-megabyte) input is not copied first
    except zlib.error as exc:
        raise MalformedDicom(path, offset, f"deflated data set cannot be inflated: {exc}") from None
    if d.unconsumed_tail:
        raise MalformedDicom(path, offset, f"deflated data set inflates past {limit} bytes")
    if not d.eof:
        raise MalformedDicom(path, offset, "truncated deflated data set")
    return out


cdef Py_ssize_t _meta_element(uint8_t* p, uint32_t tag, uint16_t vr, bytes value):
    """Writes one explicit VR LE File Meta element at p (p may be NULL to measure); returns its size."""
    cdef Py_ssize_t n = len(value), padded = n + (n & 1), hdr = 12 if vr_is_long(vr) else 8
    if p == NULL:
        return hdr + padded
    wr16(p, tag >> 16, True)
    wr16(p + 2, tag & 0xFFFF, True)
    p[4] = vr >> 8
    p[5] = vr & 0xFF
    if hdr == 12:
        p[6] = 0
        p[7] = 0
        wr32(p + 8, <uint32_t>padded, True)
    else:
        wr16(p + 6, <uint16_t>padded, True)
    memcpy(p + hdr, PyBytes_AS_STRING(value), n)
    if n & 1:
        p[hdr + n] = 0 if vr == VR_UI or vr == VR_OB else 32
    return hdr + padded


cdef bytes _build_header(str sop_class, str sop_instance, str transfer_syntax, const uint8_t* dataset,
                         Py_ssize_t dataset_len):
    """Preamble, ``DICM``, a File Meta group written anew (PS3.10 7.1) and the first data set bytes, in one
    allocation."""
    cdef uint16_t vrs[6]
    cdef uint32_t tags[6]
    cdef Py_ssize_t group_len = 0, i, pos
    values = (b"\x00\x01", sop_class.encode("ascii"), sop_instance.encode("ascii"),
              transfer_syntax.encode("ascii"), IMPLEMENTATION_CLASS_UID_B, IMPLEMENTATION_VERSION_NAME_B)
    tags[:] = [0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013]
    vrs[:] = [VR_OB, VR_UI, VR_UI, VR_UI, VR_UI, VR_SH]
    for i in range(6):
        group_len += _meta_element(NULL, tags[i], vrs[i], values[i])
    out = PyBytes_FromStringAndSize(NULL, 132 + 12 + group_len + dataset_len)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    memset(p, 0, 128)
    memcpy(p + 128, b"DICM", 4)
    wr16(p + 132, 0x0002, True)
    wr16(p + 134, 0x0000, True)
    p[136] = 85  # U
    p[137] = 76  # L
    wr16(p + 138, 4, True)
    wr32(p + 140, <uint32_t>group_len, True)
    pos = 144
    for i in range(6):
        pos += _meta_element(p + pos, tags[i], vrs[i], values[i])
    if dataset_len:
        memcpy(p + pos, dataset, dataset_len)
    return out


def build_meta(str sop_class, str sop_instance, str transfer_syntax):
    """Preamble, ``DICM`` and a File Meta group written anew (PS3.10 7.1), group length right."""
    return _build_header(sop_class, sop_instance, transfer_syntax, NULL, 0)
