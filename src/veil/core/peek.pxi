# Included by _core.pyx. peek: the identity and signature values at a file's top level, for the stages beside
# the Rewriter (free-text cleaning, pixel rules, veil profile, veil peek), read by a TagReader.

_PEEK_TAGS = {
    0x00080005: "specific_character_set",
    0x00080008: "image_type",
    0x00080016: "sop_class_uid",
    0x00080018: "sop_instance_uid",
    0x00080020: "study_date",
    0x00080050: "accession_number",
    0x00080080: "institution_name",
    0x00080090: "referring_physician_name",
    0x00081010: "station_name",
    0x00081050: "performing_physician_name",
    0x00081070: "operators_name",
    0x00101000: "other_patient_ids",
    0x00180015: "body_part_examined",
    0x00200010: "study_id",
    0x00080060: "modality",
    0x00080070: "manufacturer",
    0x00081090: "manufacturer_model_name",
    0x00100010: "patient_name",
    0x00100020: "patient_id",
    0x00100030: "patient_birth_date",
    0x00101040: "patient_address",
    0x00102154: "patient_telephone_numbers",
    0x00181020: "software_versions",
    0x0020000D: "study_instance_uid",
    0x0020000E: "series_instance_uid",
    0x00200052: "frame_of_reference_uid",
    0x00280002: "samples_per_pixel",
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280301: "burned_in_annotation",
}


# The same tags as a C array, so the walk asks the dict only for elements it wants (no int boxing per element).
cdef uint32_t _PEEK_ARRAY[32]
cdef int _PEEK_N = len(_PEEK_TAGS)
assert _PEEK_N <= 32
for _i, _tag in enumerate(sorted(_PEEK_TAGS)):
    _PEEK_ARRAY[_i] = _tag


cdef inline bint _wanted(uint32_t tag, const uint32_t* tags, int n) noexcept:
    cdef int i
    for i in range(n):
        if tags[i] == tag:
            return True
    return False


cdef int _top_level(dict out, dict names, const uint8_t[::1] data, str path, Meta meta, uint32_t last,
                    const uint32_t* tags, int n, const uint32_t* us_tags, int n_us, bint exact) except -1:
    """Fills ``out[names[tag]]`` for the top-level elements among ``tags`` (not sequences), from a walk of the
    data set (inflated when deflated) that stops after ``last``: those among ``us_tags`` as one US (int; with
    ``exact``, only a value of exactly two bytes, else at least two), the others as stripped latin-1 text.
    Raises MalformedDicom like the Rewriter."""
    cdef TagReader walker
    cdef Header h
    cdef Py_ssize_t pos, end, vpos, vend
    cdef bint explicit = meta.explicit, little = meta.little
    cdef const uint8_t[::1] view
    walker = TagReader.__new__(TagReader)
    walker.path = path
    walker.base = 0
    if meta.deflated:
        source = memoryview(inflate(data[meta.dataset_offset:], path, meta.dataset_offset))
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
    while pos < end:
        if pos + 4 <= end and rdtag(walker.buf + pos, little) > last:
            break  # before reading the header: a header-only buffer may end inside the next value
        walker._header(pos, end, explicit, little, &h)
        if (h.tag >> 16) == 0xFFFE:
            walker._fail(pos, "unexpected item tag in a data set")
        vpos = pos + h.hdr
        vend = walker._skip_value(vpos, end, &h, 0)
        if not h.seq and _wanted(h.tag, tags, n):
            if _wanted(h.tag, us_tags, n_us):
                if vend - vpos == 2 or (not exact and vend - vpos > 2):
                    out[names[h.tag]] = rd16(&view[vpos], little)
                else:
                    out[names[h.tag]] = None
            else:
                out[names[h.tag]] = bytes(view[vpos:vend]).strip(b" \x00").decode("latin-1")
        pos = vend
    return 0


cdef uint32_t _PEEK_US[3]
_PEEK_US[0] = 0x00280010
_PEEK_US[1] = 0x00280011
_PEEK_US[2] = 0x00280002


def peek(const uint8_t[::1] data not None, str path=""):
    """The values later stages need, from a walk of the top level that stops after (0028,0301).

    Returns a dict: transfer_syntax, patient_id, patient_name, patient_birth_date, patient_address,
    patient_telephone_numbers, accession_number, institution_name, referring_physician_name, station_name
    (held in memory only, for cleaning free text), study/series/sop instance UIDs, sop_class_uid,
    frame_of_reference_uid, modality, manufacturer, manufacturer_model_name, software_versions, image_type,
    body_part_examined, samples_per_pixel, rows, columns, burned_in_annotation, specific_character_set,
    study_date (strings stripped; rows, columns and samples_per_pixel as int or None). Raises MalformedDicom
    like ``Rewriter.rewrite``.
    """
    cdef Meta meta = _read_meta(data, path)
    out = {name: None for name in _PEEK_TAGS.values()}
    out["transfer_syntax"] = meta.transfer_syntax
    _top_level(out, _PEEK_TAGS, data, path, meta, 0x00280301, _PEEK_ARRAY, _PEEK_N, _PEEK_US, 3, False)
    if not out["sop_class_uid"]:
        out["sop_class_uid"] = meta.sop_class_uid or None
    if not out["sop_instance_uid"]:
        out["sop_instance_uid"] = meta.sop_instance_uid or None
    return out


# The Image Pixel module attributes that say how a native image's bytes are laid out (PS3.3 C.7.6.3), for the
# burned-in text check: read from a rewrite's header instead of a pydicom parse of it (half a millisecond a
# file). US values as int, the two strings stripped; an element whose value is not one US is None.
_PIXEL_TAGS = {
    0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation",
    0x00280006: "PlanarConfiguration",
    0x00280008: "NumberOfFrames",
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280100: "BitsAllocated",
    0x00280101: "BitsStored",
    0x00280103: "PixelRepresentation",
}


cdef uint32_t _PIXEL_ARRAY[16]
cdef uint32_t _PIXEL_US[16]
cdef int _PIXEL_N = len(_PIXEL_TAGS)
cdef int _PIXEL_N_US = 0
for _i, _tag in enumerate(sorted(_PIXEL_TAGS)):
    _PIXEL_ARRAY[_i] = _tag
    if _tag not in (0x00280004, 0x00280008):  # the two strings
        _PIXEL_US[_PIXEL_N_US] = _tag
        _PIXEL_N_US += 1


def pixel_module(const uint8_t[::1] data not None, str path=""):
    """The Image Pixel module attributes at a file's top level (keyword -> value: int for the US ones, stripped
    str for PhotometricInterpretation and NumberOfFrames, None where absent or not one US value), from a walk
    that stops after (0028,0103); a header without its Pixel Data (a rewrite's ``header``) is enough. Raises
    MalformedDicom like :func:`peek`."""
    cdef Meta meta = _read_meta(data, path)
    out = {name: None for name in _PIXEL_TAGS.values()}
    _top_level(out, _PIXEL_TAGS, data, path, meta, 0x00280103, _PIXEL_ARRAY, _PIXEL_N, _PIXEL_US, _PIXEL_N_US,
               True)
    return out
