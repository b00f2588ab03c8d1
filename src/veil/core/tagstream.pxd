# Low-level pieces of the tag-stream reader and writer: endian-aware reads, VR codes, a growable output
# buffer. Everything here is `cdef inline` so it compiles into the module that cimports it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int16_t, int64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, realloc, free

cdef extern from "vrtable.h":
    const int VEIL_VR_EXACT_N
    const int VEIL_VR_MASK_N
    const uint32_t veil_vr_tags[]
    const uint16_t veil_vr_codes[]
    const int VEIL_VR_SLOT_SHIFT
    const uint32_t VEIL_VR_SLOT_MASK
    const int16_t veil_vr_slots[]
    const uint32_t veil_vr_mask_masks[]
    const uint32_t veil_vr_mask_values[]
    const uint16_t veil_vr_mask_codes[]

# Two-letter VRs as 16-bit codes: (first char << 8) | second char.
cdef enum:
    VR_AE = 0x4145
    VR_AS = 0x4153
    VR_AT = 0x4154
    VR_CS = 0x4353
    VR_DA = 0x4441
    VR_DS = 0x4453
    VR_DT = 0x4454
    VR_FD = 0x4644
    VR_FL = 0x464C
    VR_IS = 0x4953
    VR_LO = 0x4C4F
    VR_LT = 0x4C54
    VR_OB = 0x4F42
    VR_OD = 0x4F44
    VR_OF = 0x4F46
    VR_OL = 0x4F4C
    VR_OV = 0x4F56
    VR_OW = 0x4F57
    VR_PN = 0x504E
    VR_SH = 0x5348
    VR_SL = 0x534C
    VR_SQ = 0x5351
    VR_SS = 0x5353
    VR_ST = 0x5354
    VR_SV = 0x5356
    VR_TM = 0x544D
    VR_UC = 0x5543
    VR_UI = 0x5549
    VR_UL = 0x554C
    VR_UN = 0x554E
    VR_UR = 0x5552
    VR_US = 0x5553
    VR_UT = 0x5554
    VR_UV = 0x5556

cdef enum:
    TAG_ITEM = 0xFFFEE000
    TAG_ITEM_DELIM = 0xFFFEE00D
    TAG_SEQ_DELIM = 0xFFFEE0DD
    UNDEFINED = 0xFFFFFFFF


cdef inline uint16_t rd16(const uint8_t* p, bint little) noexcept nogil:
    if little:
        return <uint16_t>(p[0] | (p[1] << 8))
    return <uint16_t>((p[0] << 8) | p[1])


cdef inline uint32_t rd32(const uint8_t* p, bint little) noexcept nogil:
    if little:
        return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | (<uint32_t>p[3])


cdef inline uint32_t rdtag(const uint8_t* p, bint little) noexcept nogil:
    return (<uint32_t>rd16(p, little) << 16) | rd16(p + 2, little)


cdef inline void wr16(uint8_t* p, uint16_t v, bint little) noexcept nogil:
    if little:
        p[0] = v & 0xFF
        p[1] = v >> 8
    else:
        p[0] = v >> 8
        p[1] = v & 0xFF


cdef inline void wr32(uint8_t* p, uint32_t v, bint little) noexcept nogil:
    if little:
        p[0] = v & 0xFF
        p[1] = (v >> 8) & 0xFF
        p[2] = (v >> 16) & 0xFF
        p[3] = v >> 24
    else:
        p[0] = v >> 24
        p[1] = (v >> 16) & 0xFF
        p[2] = (v >> 8) & 0xFF
        p[3] = v & 0xFF


cdef inline bint vr_is_long(uint16_t vr) noexcept nogil:
    """VRs whose explicit encoding has 2 reserved bytes and a 32-bit length (PS3.5 Table 7.1-1)."""
    return (vr == VR_OB or vr == VR_OD or vr == VR_OF or vr == VR_OL or vr == VR_OV or vr == VR_OW
            or vr == VR_SQ or vr == VR_SV or vr == VR_UC or vr == VR_UN or vr == VR_UR or vr == VR_UT
            or vr == VR_UV)


cdef inline bint vr_is_known(uint16_t vr) noexcept nogil:
    if vr_is_long(vr):
        return True
    return (vr == VR_AE or vr == VR_AS or vr == VR_AT or vr == VR_CS or vr == VR_DA or vr == VR_DS
            or vr == VR_DT or vr == VR_FD or vr == VR_FL or vr == VR_IS or vr == VR_LO or vr == VR_LT
            or vr == VR_PN or vr == VR_SH or vr == VR_SL or vr == VR_SS or vr == VR_ST or vr == VR_TM
            or vr == VR_UI or vr == VR_UL or vr == VR_US)


cdef inline int vr_unit(uint16_t vr) noexcept nogil:
    """The value size of fixed-size binary VRs (lengths must be a multiple), 1 for everything else."""
    if vr == VR_SS or vr == VR_US or vr == VR_OW:
        return 2
    if vr == VR_AT or vr == VR_FL or vr == VR_SL or vr == VR_UL or vr == VR_OF or vr == VR_OL:
        return 4
    if vr == VR_FD or vr == VR_SV or vr == VR_UV or vr == VR_OD or vr == VR_OV:
        return 8
    return 1


cdef inline bint vr_is_text(uint16_t vr) noexcept nogil:
    """Character-string VRs padded with a space (UI, padded with NUL, is not one of them)."""
    return (vr == VR_AE or vr == VR_AS or vr == VR_CS or vr == VR_DA or vr == VR_DS or vr == VR_DT
            or vr == VR_IS or vr == VR_LO or vr == VR_LT or vr == VR_PN or vr == VR_SH or vr == VR_ST
            or vr == VR_TM or vr == VR_UC or vr == VR_UR or vr == VR_UT)


cdef inline uint32_t tag_slot(uint32_t tag, int shift) noexcept nogil:
    """A tag's first slot in a direct table of 2**(32 - shift) slots (Fibonacci hashing; linear probing from
    there): the VR table's (scripts/gen_vrtable.py makes its slots the same way) and a compiled Plan's."""
    return (tag * <uint32_t>2654435761u) >> shift


cdef inline uint16_t dictionary_vr(uint32_t tag) noexcept nogil:
    """The data dictionary's VR for a public tag (a direct table, then repeating-group masks); UN if unknown."""
    cdef int i
    cdef int16_t found
    cdef uint32_t at = tag_slot(tag, VEIL_VR_SLOT_SHIFT)
    while True:
        found = veil_vr_slots[at]
        if found < 0:
            break
        if veil_vr_tags[found] == tag:
            return veil_vr_codes[found]
        at = (at + 1) & VEIL_VR_SLOT_MASK
    for i in range(VEIL_VR_MASK_N):
        if (tag & veil_vr_mask_masks[i]) == veil_vr_mask_values[i]:
            return veil_vr_mask_codes[i]
    return VR_UN


# A growable byte buffer for the output; grows geometrically, reused across files by the owner.
cdef struct OutBuf:
    uint8_t* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef inline int out_reserve(OutBuf* o, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = o.length + extra
    cdef Py_ssize_t cap
    cdef uint8_t* data
    if need <= o.capacity:
        return 0
    cap = o.capacity * 2 if o.capacity else 4096
    while cap < need:
        cap *= 2
    data = <uint8_t*>realloc(o.data, cap)
    if data == NULL:
        raise MemoryError()
    o.data = data
    o.capacity = cap
    return 0


cdef inline int out_put(OutBuf* o, const uint8_t* src, Py_ssize_t n) except -1:
    if o.length + n > o.capacity:
        out_reserve(o, n)
    memcpy(o.data + o.length, src, n)
    o.length += n
    return 0


cdef inline int out_byte(OutBuf* o, uint8_t b) except -1:
    if o.length + 1 > o.capacity:
        out_reserve(o, 1)
    o.data[o.length] = b
    o.length += 1
    return 0


cdef inline int out_u16(OutBuf* o, uint16_t v, bint little) except -1:
    if o.length + 2 > o.capacity:
        out_reserve(o, 2)
    wr16(o.data + o.length, v, little)
    o.length += 2
    return 0


cdef inline int out_u32(OutBuf* o, uint32_t v, bint little) except -1:
    if o.length + 4 > o.capacity:
        out_reserve(o, 4)
    wr32(o.data + o.length, v, little)
    o.length += 4
    return 0


cdef inline void out_free(OutBuf* o) noexcept:
    if o.data != NULL:
        free(o.data)
    o.data = NULL
    o.length = 0
    o.capacity = 0
