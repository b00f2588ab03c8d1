# Included by _core.pyx. identity_values: the values of a file's identity elements at every depth (every PN,
# the attributes of veil.core.identity.IDENTITY_TAGS, the device names), for veil.core.identity's FileIdentity.
# A TagReader walks every sequence and item (defined or undefined length, explicit or implicit VR items, UN
# sequences read as implicit VR little endian, PS3.5 6.2.2) and stops at the top-level Pixel Data.

# The wanted tags as a sorted C array (filled from veil.core.identity on first use: importing the core stays
# cheap), looked up by binary search so that no Python object is made per element that is not wanted.
cdef uint32_t _IDENTITY_ARRAY[96]
cdef int _IDENTITY_N = -1


cdef int _identity_init() except -1:
    global _IDENTITY_N
    from veil.core.identity import DEVICE_TAGS, IDENTITY_TAGS
    tags = sorted(set(IDENTITY_TAGS) | set(DEVICE_TAGS))
    if len(tags) > 96:
        raise RuntimeError("too many identity tags for the native table")
    for i, tag in enumerate(tags):
        _IDENTITY_ARRAY[i] = tag
    _IDENTITY_N = len(tags)
    return 0


cdef inline bint _identity_wanted(uint32_t tag) noexcept:
    cdef int lo = 0, hi = _IDENTITY_N - 1, mid
    while lo <= hi:
        mid = (lo + hi) >> 1
        if _IDENTITY_ARRAY[mid] == tag:
            return True
        if _IDENTITY_ARRAY[mid] < tag:
            lo = mid + 1
        else:
            hi = mid - 1
    return False


cdef inline int _identity_take(TagReader r, Header* h, Py_ssize_t vpos, Py_ssize_t vend, list out) except -1:
    """Appends (tag, VR, value without trailing space or NUL) when the element is wanted."""
    if h.length == UNDEFINED or not (h.eff_vr == VR_PN or _identity_wanted(h.tag)):
        return 0
    while vend > vpos and (r.buf[vend - 1] == 32 or r.buf[vend - 1] == 0):
        vend -= 1
    out.append((h.tag, vr_name(h.eff_vr), PyBytes_FromStringAndSize(<const char*>(r.buf + vpos), vend - vpos)))
    return 0


cdef Py_ssize_t _identity_items(TagReader r, Py_ssize_t vpos, Py_ssize_t end, Header* h, int depth,
                                list out) except -1:
    """Walks the items of a sequence whose value starts at vpos; returns the end of its value."""
    cdef bint undefined = h.length == UNDEFINED
    cdef bint seq_explicit = h.seq_explicit, il = h.seq_little, ie
    cdef Py_ssize_t pos = vpos, send = end if undefined else vpos + h.length
    cdef uint32_t tag, length
    if depth + 1 > MAX_DEPTH:
        r._fail(vpos, f"sequences nested deeper than {MAX_DEPTH}")
    while True:
        if undefined:
            if pos + 8 > send:
                r._fail(pos, "truncated sequence (no sequence delimiter)")
        elif pos >= send:
            break
        elif pos + 8 > send:
            r._fail(pos, "truncated item header")
        tag = rdtag(r.buf + pos, il)
        length = rd32(r.buf + pos + 4, il)
        if undefined and tag == TAG_SEQ_DELIM:
            pos += 8
            break
        if tag != TAG_ITEM:
            r._fail(pos, f"expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        pos += 8
        if length == UNDEFINED:
            ie = r._item_explicit(pos, send, seq_explicit, il)
            pos = _identity_dataset(r, pos, send, True, ie, il, depth + 1, out)
        else:
            if length > <uint32_t>(send - pos):
                r._fail(pos - 8, "item runs past the end of its sequence")
            ie = r._item_explicit(pos, pos + length, seq_explicit, il)
            _identity_dataset(r, pos, pos + length, False, ie, il, depth + 1, out)
            pos += length
    return pos


cdef Py_ssize_t _identity_dataset(TagReader r, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit,
                                  bint little, int depth, list out) except -1:
    """Walks the elements of one item's data set in [pos, end) (an undefined-length one up to and including its
    delimiter); returns the position after it."""
    cdef Header h
    cdef Py_ssize_t vpos, vend
    while pos < end or undefined:
        r._header(pos, end, explicit, little, &h)
        if (h.tag >> 16) == 0xFFFE:
            if h.tag == TAG_ITEM_DELIM and undefined:
                return pos + 8
            r._fail(pos, "unexpected item tag in a data set")
        vpos = pos + h.hdr
        if h.seq:
            vend = _identity_items(r, vpos, end, &h, depth, out)
        else:
            vend = r._skip_value(vpos, end, &h, depth)
            _identity_take(r, &h, vpos, vend, out)
        pos = vend
    return pos


def identity_values(const uint8_t[::1] data not None, str path=""):
    """The identity elements of a file at every depth: a list of (tag, VR, value bytes without trailing space
    or NUL) for every PN (private ones where the VR is written: explicit VR), every attribute of
    ``veil.core.identity.IDENTITY_TAGS`` and Manufacturer, ManufacturerModelName, SoftwareVersions, in stream
    order; the File Meta's MediaStorageSOPInstanceUID first. The walk stops at the top-level Pixel Data, and
    at the end of a buffer that ends inside a top-level element (a header read without its pixels). Raises
    MalformedDicom like ``peek``.
    """
    cdef TagReader walker
    cdef Header h
    cdef Py_ssize_t pos, end, hdr, vpos
    cdef uint32_t length, tag
    cdef uint16_t vr
    cdef bint explicit, little
    cdef const uint8_t[::1] view
    cdef const uint8_t* p
    cdef Meta meta = _read_meta(data, path)
    if _IDENTITY_N < 0:
        _identity_init()
    out = []
    if meta.sop_instance_uid:
        out.append((0x00020003, "UI", meta.sop_instance_uid.encode("ascii", "replace")))
    walker = TagReader.__new__(TagReader)
    walker.path = path
    walker.base = 0
    explicit = meta.explicit
    little = meta.little
    if meta.deflated:
        buf = inflate(data[meta.dataset_offset:], path, meta.dataset_offset)
        source = memoryview(buf)
        pos = 0
    else:
        source = data
        pos = meta.dataset_offset
    view = source
    if view.shape[0] == 0:
        raise MalformedDicom(path, 0, "empty data set")
    walker.buf = &view[0]
    walker.n = view.shape[0]
    end = walker.n
    while pos + 8 <= end:
        p = walker.buf + pos
        tag = rdtag(p, little)
        if (tag >> 16) == 0xFFFE:
            walker._fail(pos, "unexpected item tag in a data set")
        if tag >= 0x7FE00008:
            break  # the Pixel Data (7FE0,0008/0009/0010) and what follows it hold no identity element
        # A value that runs past the end of the buffer at the top level: the buffer is a file's head.
        hdr = 8
        length = 0
        if explicit:
            vr = (p[4] << 8) | p[5]
            if vr_is_long(vr):
                if pos + 12 > end:
                    break
                length = rd32(p + 8, little)
                hdr = 12
            elif vr_is_known(vr):
                length = rd16(p + 6, little)
            # an unknown VR: _header below raises
        else:
            length = rd32(p + 4, little)
        if length != UNDEFINED and length > <uint32_t>(end - pos - hdr):
            break
        walker._header(pos, end, explicit, little, &h)
        vpos = pos + h.hdr
        if h.seq:
            pos = _identity_items(walker, vpos, end, &h, 0, out)
        else:
            pos = walker._skip_value(vpos, end, &h, 0)
            _identity_take(walker, &h, vpos, pos, out)
    return out
