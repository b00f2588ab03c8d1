# Included by _core.pyx. Reading the element stream: VR helpers, and TagReader, which reads element headers
# (PS3.5 7.1) with every length checked against the end of its buffer, and skips values, sequences and
# encapsulated pixel data. Rewriter (rewriter.pxi) is a TagReader; peek (peek.pxi) uses one on its own.

cdef inline int vr_slot(uint16_t vr) noexcept nogil:
    cdef int a = (vr >> 8) - 65, b = (vr & 0xFF) - 65
    if a < 0 or a > 25 or b < 0 or b > 25:
        return -1
    return a * 26 + b


cdef str vr_name(uint16_t vr):
    return chr(vr >> 8) + chr(vr & 0xFF)


cdef uint16_t vr_code(str name):
    return (ord(name[0]) << 8) | ord(name[1])


cdef class TagReader:
    """A walk over the element headers of one buffer (``buf``, ``n`` bytes, read as ``path``; errors name
    ``base + pos``); nothing here writes or allocates per element."""

    def __cinit__(self):
        self.hole_at = -1
        self.hole_len = 0

    # --- errors -----------------------------------------------------------------------------------------

    cdef int _fail(self, Py_ssize_t pos, str reason) except -1:
        raise MalformedDicom(self.path, self.base + pos, reason)

    # --- headers ----------------------------------------------------------------------------------------

    cdef int _header(self, Py_ssize_t pos, Py_ssize_t end, bint explicit, bint little, Header* h) except -1:
        """Reads the element header at pos; checks the value lies inside [pos, end)."""
        cdef const uint8_t* p = self.buf + pos
        cdef uint16_t group, dv
        if pos + 8 > end:
            self._fail(pos, "truncated element header")
        h.tag = rdtag(p, little)
        group = h.tag >> 16
        if group == 0xFFFE:
            h.vr = 0
            h.eff_vr = 0
            h.length = rd32(p + 4, little)
            h.hdr = 8
            h.seq = False
            return 0
        if explicit:
            h.vr = (p[4] << 8) | p[5]
            if not vr_is_known(h.vr):
                self._fail(pos, f"bad VR {bytes(p[4:6])!r} for ({group:04X},{h.tag & 0xFFFF:04X})")
            if vr_is_long(h.vr):
                if pos + 12 > end:
                    self._fail(pos, "truncated element header")
                h.length = rd32(p + 8, little)
                h.hdr = 12
            else:
                h.length = rd16(p + 6, little)
                h.hdr = 8
            h.eff_vr = h.vr
            if h.vr == VR_UN and not (group & 1):
                dv = dictionary_vr(h.tag)
                if dv != VR_UN:
                    h.eff_vr = dv
        else:
            h.length = rd32(p + 4, little)
            h.hdr = 8
            if group & 1:
                h.vr = VR_LO if 0x10 <= (h.tag & 0xFFFF) <= 0xFF else VR_UN
            else:
                h.vr = dictionary_vr(h.tag)
            h.eff_vr = h.vr
        h.seq = False
        h.seq_explicit = explicit
        h.seq_little = little
        if h.length == UNDEFINED:
            if h.tag == 0x7FE00010 and (not explicit or h.vr == VR_OB or h.vr == VR_OW):
                return 0
            if not explicit or h.vr == VR_SQ or h.vr == VR_UN:
                h.seq = True
            else:
                self._fail(pos, f"undefined length for VR {vr_name(h.vr)} ({group:04X},{h.tag & 0xFFFF:04X})")
        else:
            if h.length > <uint32_t>(end - pos - h.hdr) and not (
                    pos + h.hdr == self.hole_at and h.length == <uint32_t>self.hole_len):
                self._fail(pos, f"value length {h.length} of ({group:04X},{h.tag & 0xFFFF:04X}) runs past the end "
                                f"({end - pos - h.hdr} bytes left)")
            if h.eff_vr == VR_SQ:
                h.seq = True
            elif h.length % vr_unit(h.vr):
                self._fail(pos, f"length {h.length} impossible for VR {vr_name(h.vr)} "
                                f"({group:04X},{h.tag & 0xFFFF:04X})")
        if h.seq and h.vr == VR_UN:
            # PS3.5 6.2.2: a sequence in a UN element is encoded as Implicit VR Little Endian.
            h.seq_explicit = False
            h.seq_little = True
        return 0

    # --- skipping (for sequences copied whole or removed, and encapsulated pixel data) -------------------

    cdef Py_ssize_t _skip_fragments(self, Py_ssize_t pos, Py_ssize_t end, bint little) except -1:
        cdef uint32_t tag, length
        while True:
            if pos + 8 > end:
                self._fail(pos, "truncated encapsulated pixel data (no sequence delimiter)")
            tag = rdtag(self.buf + pos, little)
            length = rd32(self.buf + pos + 4, little)
            if tag == TAG_SEQ_DELIM:
                return pos + 8
            if tag != TAG_ITEM:
                self._fail(pos, f"expected a pixel data item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if length == UNDEFINED or length > <uint32_t>(end - pos - 8):
                self._fail(pos, "pixel data fragment runs past the end")
            pos += 8 + length

    cdef Py_ssize_t _skip_items(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit,
                                bint little, int depth) except -1:
        """Skips the items of a sequence whose value starts at pos; returns the end of the value."""
        cdef uint32_t tag, length
        if depth > MAX_DEPTH:
            self._fail(pos, f"sequences nested deeper than {MAX_DEPTH}")
        while pos < end or undefined:
            if pos + 8 > end:
                self._fail(pos, "truncated sequence")
            tag = rdtag(self.buf + pos, little)
            length = rd32(self.buf + pos + 4, little)
            if tag == TAG_SEQ_DELIM and undefined:
                return pos + 8
            if tag != TAG_ITEM:
                self._fail(pos, f"expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            pos += 8
            if length == UNDEFINED:
                pos = self._skip_dataset(pos, end, True, self._item_explicit(pos, end, explicit, little), little,
                                         depth + 1)
            else:
                if length > <uint32_t>(end - pos):
                    self._fail(pos - 8, "item runs past the end")
                pos += length
        return pos

    cdef Py_ssize_t _skip_dataset(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit,
                                  bint little, int depth) except -1:
        cdef Header h
        while pos < end or undefined:
            self._header(pos, end, explicit, little, &h)
            if h.tag == TAG_ITEM_DELIM and undefined:
                return pos + 8
            if (h.tag >> 16) == 0xFFFE:
                self._fail(pos, "unexpected item tag in a data set")
            pos += h.hdr
            pos = self._skip_value(pos, end, &h, depth)
        return pos

    cdef inline Py_ssize_t _skip_value(self, Py_ssize_t pos, Py_ssize_t end, Header* h, int depth) except -1:
        """pos is the start of the value; returns its end."""
        if h.length != UNDEFINED:
            return pos + h.length
        if h.seq:
            return self._skip_items(pos, end, True, h.seq_explicit, h.seq_little, depth + 1)
        return self._skip_fragments(pos, end, h.seq_little)

    # --- item encoding ----------------------------------------------------------------------------------

    cdef bint _item_explicit(self, Py_ssize_t pos, Py_ssize_t end, bint explicit, bint little) noexcept:
        """Whether an item's data set is explicit VR. Some writers put explicit VR items inside implicit VR
        files and the reverse (pydicom reads them the same way): follow the first element of the item."""
        cdef uint16_t vr
        cdef uint32_t length
        if not little or pos + 8 > end or rdtag(self.buf + pos, little) == TAG_ITEM_DELIM:
            return explicit  # there is no implicit VR big endian (PS3.5 A.3 is explicit only)
        vr = (self.buf[pos + 4] << 8) | self.buf[pos + 5]
        length = rd32(self.buf + pos + 4, little)
        if explicit:
            return vr_is_known(vr)
        return vr_is_known(vr) and length != UNDEFINED and length > <uint32_t>(end - pos - 8)

    # --- the top level, by its headers only -------------------------------------------------------------

    cdef bytes _find_top_level(self, Py_ssize_t pos, uint32_t wanted, bint explicit, bint little):
        """The stripped value of a top-level element (b"" when absent), by a walk over headers only."""
        cdef Header h
        cdef Py_ssize_t vpos, vend
        while pos < self.n:
            self._header(pos, self.n, explicit, little, &h)
            if h.tag >= wanted or (h.tag >> 16) == 0xFFFE:
                if h.tag == wanted and not h.seq and h.length != UNDEFINED:
                    vpos = pos + h.hdr
                    vend = vpos + h.length
                    while vend > vpos and (self.buf[vend - 1] == 32 or self.buf[vend - 1] == 0):
                        vend -= 1
                    while vpos < vend and self.buf[vpos] == 32:
                        vpos += 1
                    return PyBytes_FromStringAndSize(<const char*>(self.buf + vpos), vend - vpos)
                return b""
            pos = self._skip_value(pos + h.hdr, self.n, &h, 0)
        return b""

    cdef tuple _locate_pixels(self, bytes head, Py_ssize_t size, str src):
        """Where the top-level Pixel Data value of a file starts and how long it is, from the file's head (a
        walk over top-level element headers); (0, 0) when the head does not show a plain one that runs past
        the head and ends within the file."""
        cdef const uint8_t[::1] view = head
        cdef Py_ssize_t n = len(head), pos, hdr
        cdef uint32_t tag, length
        cdef uint16_t vr
        cdef bint explicit, little
        cdef Header h
        cdef Meta meta
        try:
            meta = _read_meta(view, src)
        except MalformedDicom:
            return (0, 0)
        if meta.deflated:
            return (0, 0)
        explicit = meta.explicit
        little = meta.little
        self.buf = &view[0]
        self.n = n
        self.path = src
        self.base = 0
        pos = meta.dataset_offset
        try:
            while pos + 8 <= n:
                tag = rdtag(self.buf + pos, little)
                if tag == 0x7FE00010 or tag == 0x7FE00008 or tag == 0x7FE00009:
                    if explicit:
                        vr = (self.buf[pos + 4] << 8) | self.buf[pos + 5]
                        if not vr_is_long(vr) or pos + 12 > n:
                            return (0, 0)
                        length = rd32(self.buf + pos + 8, little)
                        hdr = 12
                    else:
                        length = rd32(self.buf + pos + 4, little)
                        hdr = 8
                    if length == UNDEFINED or length & 1 or pos + hdr + <Py_ssize_t>length <= n:
                        return (0, 0)
                    if pos + hdr + <Py_ssize_t>length > size:
                        return (0, 0)
                    return (pos + hdr, length)
                if tag > 0x7FE00010:
                    return (0, 0)
                self._header(pos, n, explicit, little, &h)
                pos = self._skip_value(pos + h.hdr, n, &h, 0)
        except MalformedDicom:
            return (0, 0)
        finally:
            self.buf = NULL
            self.n = 0
        return (0, 0)
