# Included by _core.pyx. One file's output: RewriteResult, and how a Rewriter's walk becomes one (the File
# Meta written anew for the SOP Instance UID the output carries, a deflated data set compressed again, the
# top-level Pixel Data value handed back as a slice of the input).

# Deflated outputs are compressed with ISA-L (python-isal, the zlib API): a 0.5 MB CT data set takes 1.6 ms at
# its level 1 where zlib takes 13 ms at level 1 and 30 ms at level 6, for a stream within 1% of zlib level 6's
# (measured in one run). A hard dependency, so the same input gives the same bytes on every install.
DEFLATE_LEVEL = 1


cdef class RewriteResult:
    """One file's output: header bytes, the pixel slice of the input, the trailer, and what was done."""

    @property
    def counts(self):
        """Elements per action (KEEP included; RECURSE counts the sequences walked)."""
        return {ACTION_NAMES[i]: self._counts[i] for i in range(N_ACTIONS)}

    @property
    def counts_row(self):
        """The counts as a tuple in ``ACTION_NAMES`` order (one audit row's)."""
        return tuple([self._counts[i] for i in range(N_ACTIONS)])

    def parts(self):
        """The output as a list of buffers to write in order (one ``writev``)."""
        if self.pixels is None:
            return [self.header, self.trailer] if self.trailer else [self.header]
        return [self.header, self.pixels, self.trailer] if self.trailer else [self.header, self.pixels]

    def tobytes(self):
        """The whole output file as bytes (copies the pixel slice)."""
        return b"".join(self.parts())

    def __len__(self):
        return len(self.header) + (len(self.pixels) if self.pixels is not None else 0) + len(self.trailer)

    def touched(self):
        """Every element the Plan changed: (path like ``(0008,1140)[0](0008,1155)``, action name)."""
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(self._touched)
        cdef Py_ssize_t n = len(self._touched), pos = 0
        cdef int depth, i
        out = []
        while pos < n:
            depth = p[pos]
            pos += 1
            parts = []
            for i in range(depth):
                tag = rd32(p + pos, True)
                item = rd32(p + pos + 4, True)
                parts.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X})[{item}]")
                pos += 8
            tag = rd32(p + pos, True)
            parts.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
            out.append(("".join(parts), ACTION_NAMES[p[pos + 4]]))
            pos += 5
        return out


cdef RewriteResult _make_result(Rewriter rw, source, data, Meta meta, bint deflated):
    """The RewriteResult of the file the Rewriter has just walked: ``data`` is the file, ``source`` what was
    walked (its inflated data set when deflated)."""
    cdef RewriteResult res = RewriteResult()
    cdef Py_ssize_t head_len, pixel_len
    cdef char* out
    sop_class = meta.sop_class_uid or _strip_uid(rw.sop_class_in)
    sop_instance = _strip_uid(rw.sop_instance_out)
    if not sop_instance:
        # Not in the output: name the instance by the remapped original, as the data set would have.
        original = _strip_uid(rw.sop_instance_in) or meta.sop_instance_uid
        if not original:
            # No SOP Instance UID anywhere (old ACR-NEMA style files): name the output by the keyed UID of
            # the input's digest, so the same input always gets the same, non-identifying UID.
            if rw.hole_at >= 0:
                raise _NeedWholeFile()
            import hashlib  # here: rare, and OpenSSL's hashlib costs every process 5 ms to import

            original = "sha256:" + hashlib.sha256(data).hexdigest()
        if not original.isascii():
            rw._fail(0, "SOP Instance UID holds characters that are not ASCII")
        sop_instance = rw._map_one_uid(original)
    if not (sop_class.isascii() and sop_instance.isascii()):
        rw._fail(0, "SOP Class or SOP Instance UID holds characters that are not ASCII")
    res.transfer_syntax = meta.transfer_syntax
    res.sop_instance_uid = sop_instance
    res.sop_class_uid = sop_class
    res.modality = _strip_uid(rw.modality_out)
    res.study_instance_uid = _strip_uid(rw.study_out)
    res.series_instance_uid = _strip_uid(rw.series_out)
    memcpy(res._counts, rw.counts, sizeof(rw.counts))
    res._touched = PyBytes_FromStringAndSize(<const char*>rw.touched.data, rw.touched.length)
    if deflated:
        if rw.has_pixels:
            # The data set whole in one allocation (header, the inflated pixels, trailer): half a megabyte
            # copied once, not three times.
            pixel_len = rw.pixel_stop - rw.pixel_start
            dataset = PyBytes_FromStringAndSize(NULL, rw.out.length + pixel_len)
            out = PyBytes_AS_STRING(dataset)
            memcpy(out, rw.out.data, rw.out_at_pixels)
            memcpy(out + rw.out_at_pixels, PyBytes_AS_STRING(source) + rw.pixel_start, pixel_len)
            memcpy(out + rw.out_at_pixels + pixel_len, rw.out.data + rw.out_at_pixels,
                   rw.out.length - rw.out_at_pixels)
        else:
            dataset = PyBytes_FromStringAndSize(<const char*>rw.out.data, rw.out.length)
        from isal import isal_zlib  # at the first deflated output, not at every start (1.3 ms)

        deflated_stream = isal_zlib.compress(dataset, DEFLATE_LEVEL, -15)  # as compressobj, one call
        # PS3.5 A.5: an odd-length deflated bit stream gets a single trailing NULL byte (after the end of
        # the stream, so readers that inflate to the stream's end never see it).
        if len(deflated_stream) & 1:
            deflated_stream += b"\x00"
        res.header = build_meta(sop_class, sop_instance, meta.transfer_syntax) + deflated_stream
        res.pixels = None
        res.pixel_range = None
        res.trailer = b""
        return res
    head_len = rw.out_at_pixels if rw.has_pixels else rw.out.length
    res.header = _build_header(sop_class, sop_instance, meta.transfer_syntax, rw.out.data, head_len)
    if rw.has_pixels:
        res.pixels = memoryview(data)[rw.pixel_start:rw.pixel_stop] if rw.hole_at < 0 else None
        res.pixel_range = (rw.pixel_start, rw.pixel_stop)
        res.trailer = PyBytes_FromStringAndSize(<const char*>(rw.out.data + head_len),
                                                rw.out.length - head_len)
    else:
        res.pixels = None
        res.pixel_range = None
        res.trailer = b""
    return res


cdef str _strip_uid(value):
    if value is None:
        return ""
    return bytes(value).strip(b" \x00").decode("ascii", "replace")
