# The C-level face of veil's native core (veil.core._core): the action codes, the element header, and each
# cdef class's state and C methods. Cython reads this file before _core.pyx (same name); the implementations
# are in the .pxi files that _core.pyx includes. The low-level readers, VR codes and the output buffer are in
# tagstream.pxd; the Python face is _core.pyi.

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t

from tagstream cimport OutBuf

# The actions as the walk codes them: ``veil.core.plan.Action``'s values (checked at import), then the walk's.
cdef enum:
    A_KEEP = 0
    A_REMOVE = 1
    A_EMPTY = 2
    A_DUMMY = 3
    A_REPLACE = 4
    A_UID = 5
    A_SHIFT = 6
    A_PSEUDO = 7
    A_AGE = 8
    A_RECURSE = 9
    A_CALL = 10
    N_ACTIONS = 11
    A_NONE = 255
    MAX_DEPTH = 64
    # Each cache of keyed values (UIDs, pseudonyms, date shifts) is bounded by bytes: what its keys and values
    # hold plus an estimate of a dict entry and two bytes objects' headers. Full, it is emptied and refilled.
    CACHE_BYTES = 32 << 20
    CACHE_ENTRY_BYTES = 160
    CACHE_UID = 0  # which cache _cache_put fills
    CACHE_ID = 1
    CACHE_SHIFT = 2


cdef struct Header:
    uint32_t tag
    uint16_t vr         # as written (explicit), or the dictionary's (implicit)
    uint16_t eff_vr     # the VR the Plan sees (dictionary VR for a known UN)
    uint32_t length
    Py_ssize_t hdr      # header size in bytes
    bint seq            # value is a sequence of items
    bint seq_explicit   # encoding of the items' data sets
    bint seq_little


# result.pxi
cdef class RewriteResult:
    cdef readonly bytes header
    cdef readonly object pixels
    cdef readonly object pixel_range
    cdef readonly bytes trailer
    cdef readonly str transfer_syntax
    cdef readonly str sop_instance_uid
    cdef readonly str sop_class_uid
    cdef readonly str modality             # the output's top-level values ("" when absent): the audit's and
    cdef readonly str study_instance_uid   # the study layout's, without a second parse of the header
    cdef readonly str series_instance_uid
    cdef Py_ssize_t _counts[N_ACTIONS]
    cdef bytes _touched


# elements.pxi
cdef class TagReader:
    cdef const uint8_t* buf
    cdef Py_ssize_t n
    cdef Py_ssize_t base
    cdef str path
    # A large file rewritten from its head and tail only: the top-level Pixel Data value (hole_len bytes) is
    # not in the buffer, which jumps from hole_at (where the value would start) to what follows it.
    cdef Py_ssize_t hole_at
    cdef Py_ssize_t hole_len

    cdef int _fail(self, Py_ssize_t pos, str reason) except -1
    cdef int _header(self, Py_ssize_t pos, Py_ssize_t end, bint explicit, bint little, Header* h) except -1
    cdef Py_ssize_t _skip_fragments(self, Py_ssize_t pos, Py_ssize_t end, bint little) except -1
    cdef Py_ssize_t _skip_items(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit,
                                bint little, int depth) except -1
    cdef Py_ssize_t _skip_dataset(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit,
                                  bint little, int depth) except -1
    cdef inline Py_ssize_t _skip_value(self, Py_ssize_t pos, Py_ssize_t end, Header* h, int depth) except -1
    cdef bint _item_explicit(self, Py_ssize_t pos, Py_ssize_t end, bint explicit, bint little) noexcept
    cdef bytes _find_top_level(self, Py_ssize_t pos, uint32_t wanted, bint explicit, bint little)
    cdef tuple _locate_pixels(self, bytes head, Py_ssize_t size, str src)


# rewriter.pxi (its tables: compile.pxi; its result: result.pxi; its file paths: rewriter_io.pxi)
# Final: nothing derives from it, so every call of a C method on a Rewriter (its own or TagReader's) is a direct
# call, not one through the vtable: several a data element on the hot path.
@cython.final
cdef class Rewriter(TagReader):
    # compiled plan
    cdef uint32_t* pub_tags
    cdef uint8_t* pub_actions
    cdef int32_t* pub_args
    cdef int n_pub
    cdef int32_t* pub_slots      # open-addressed table: tag hash -> index into pub_tags, -1 when empty
    cdef uint32_t pub_mask       # its size - 1 (a power of two at least twice n_pub)
    cdef int pub_shift           # 32 - log2(size): the hash keeps the top bits of tag * 2654435761
    cdef uint32_t* mask_masks
    cdef uint32_t* mask_values
    cdef uint8_t* mask_actions
    cdef int32_t* mask_args
    cdef int n_mask
    cdef uint8_t vr_actions[676]
    cdef uint8_t default_public
    cdef uint8_t default_private
    cdef int age_cap
    cdef dict private_index
    cdef uint8_t* priv_actions
    cdef int32_t* priv_args
    cdef uint8_t* priv_keeps
    cdef uint32_t* ins_tags
    cdef int n_ins
    cdef int ins_next
    cdef list ins_bytes  # per encoding (implicit LE, explicit LE, explicit BE): the encoded elements
    cdef list values
    cdef dict dummies
    cdef object uid_fn
    cdef object id_fn
    cdef object callback
    cdef object shift_fn
    cdef dict shift_cache
    cdef dict uid_cache
    cdef dict id_cache
    cdef Py_ssize_t shift_cache_bytes
    cdef Py_ssize_t uid_cache_bytes
    cdef Py_ssize_t id_cache_bytes
    cdef public Py_ssize_t cache_limit  # bytes per cache (CACHE_BYTES unless set)
    cdef readonly object plan
    # per-file state (the input buffer, its path and the pixel hole are TagReader's)
    cdef int shift_days
    cdef OutBuf out
    cdef OutBuf touched
    cdef Py_ssize_t counts[N_ACTIONS]
    cdef uint32_t path_tags[MAX_DEPTH + 1]
    cdef uint32_t path_items[MAX_DEPTH + 1]
    cdef bint has_pixels
    cdef Py_ssize_t pixel_start
    cdef Py_ssize_t pixel_stop
    cdef Py_ssize_t out_at_pixels
    cdef bytes sop_instance_in
    cdef bytes sop_instance_out
    cdef bytes sop_class_in
    cdef bytes modality_out
    cdef bytes study_out
    cdef bytes series_out

    cdef inline int _emit_header(self, uint32_t tag, uint16_t vr, uint32_t length, bint explicit,
                                 bint little) except -1
    cdef int _emit_value(self, uint32_t tag, Header* h, const uint8_t* value, Py_ssize_t n, bint explicit,
                         bint little) except -1
    cdef inline void _record(self, uint32_t tag, int action, int depth) noexcept
    cdef bint _emit_inserts(self, uint32_t upto, bint explicit, bint little) except -1
    cdef inline int _public_action(self, uint32_t tag, uint16_t vr, int32_t* arg) noexcept
    cdef Py_ssize_t _dataset(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit, bint little,
                             int depth) except -1
    cdef int _apply(self, Py_ssize_t pos, Py_ssize_t vpos, Py_ssize_t vend, Header* h, int action, int32_t arg,
                    bint explicit, bint little, int depth) except -1
    cdef int _emit_bytes(self, uint32_t tag, Header* h, bytes value, bint explicit, bint little,
                         bint swap) except -1
    cdef bytes _map_values(self, Py_ssize_t vpos, Py_ssize_t vend, bint uids)
    cdef int _cache_put(self, int which, object key, object value, Py_ssize_t size) except -1
    cdef int _copy(self, Py_ssize_t pos, Py_ssize_t vpos, Py_ssize_t vend, Header* h, bint explicit,
                   bint little) except -1
    cdef int _sequence(self, Py_ssize_t vpos, Py_ssize_t vend, Header* h, bint explicit, bint little,
                       int depth) except -1
    cdef _walk(self, const uint8_t[::1] buf, Py_ssize_t pos, bint explicit, bint little, bint find_shift)
    cdef str _map_one_uid(self, str uid)


# meta.pxi
cdef class Meta:
    cdef readonly Py_ssize_t dataset_offset
    cdef readonly str transfer_syntax
    cdef readonly bint explicit
    cdef readonly bint little
    cdef readonly bint deflated
    cdef readonly bint had_meta
    cdef readonly str sop_class_uid
    cdef readonly str sop_instance_uid
