# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""veil's native core: a DICOM tag-stream rewriter that applies a Plan to the bytes of a file.

It walks the File Meta group and the data set once (implicit VR LE, explicit VR LE/BE, deflated, encapsulated
pixel data), every sequence and item of defined or undefined length to a depth limit, ``UN`` elements holding
implicit VR sequences and private creator blocks, and writes a Part 10 output: File Meta rebuilt, every length
right, every byte the Plan does not change copied as it was. It never builds a pydicom Dataset. The top-level
Pixel Data value is not copied: it is handed back as a slice of the input.

The semantics of each action are those of ``veil.plan`` (its docstring is the specification); the tests compare
this module against an independent pydicom implementation.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t
from libc.string cimport memcpy, memcmp, memset
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.errno cimport errno, EINTR, EIO, ENOENT
from libc.stdio cimport rename
from posix.fcntl cimport open as c_open, O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC, AT_SYMLINK_NOFOLLOW
cdef extern from "<fcntl.h>":
    const int O_NOFOLLOW
from posix.stat cimport struct_stat, fstat, fstatat, S_ISREG, S_ISDIR, S_ISLNK
from posix.uio cimport iovec, writev
from posix.unistd cimport read, write, pread, close, unlink
from posix.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_FAILED
cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        unsigned char d_type
        char d_name[1]
    DIR* opendir(const char* name)
    int closedir(DIR* d)
    int dirfd(DIR* d)
    enum:
        DT_UNKNOWN
        DT_REG
        DT_DIR
        DT_LNK
cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefault(const char* s)
cdef extern from "fileio.h" nogil:
    int veil_copy_range(int in_fd, int out_fd, int64_t offset, int64_t count)
    dirent* veil_readdir(DIR* d, int* err)
    int veil_make_parents(const char* path)

from tagstream cimport *

import hashlib
import os
import zlib

from isal import isal_zlib

from veil._version import __version__ as _VEIL_VERSION
from veil.errors import MalformedDicom, PlanError
from veil.core.plan import Action, DUMMY_VALUES, STANDARD_UID_PREFIX, encode_inserted

# veil's Implementation Class UID (PS3.7 D.3.3.2): a 2.25 UID made once from a fixed UUID.
IMPLEMENTATION_CLASS_UID = "2.25.167433902655210327398716356372095512893"
IMPLEMENTATION_VERSION_NAME = ("VEIL_" + _VEIL_VERSION)[:16]

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"

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
    CACHE_LIMIT = 200000

ACTION_NAMES = tuple(a.name for a in Action)


class _NeedWholeFile(Exception):
    """A file rewritten from its head and tail needs its whole bytes after all (the core then maps it)."""


HEAD_BYTES = 32768  # what a large file's head is read as: the elements before its Pixel Data value
assert len(ACTION_NAMES) == N_ACTIONS and all(int(a) == i for i, a in enumerate(Action))

cdef const uint8_t* STD_PREFIX = b"1.2.840.10008."
cdef Py_ssize_t STD_PREFIX_LEN = 14
# Inflated data sets larger than this, or this many times the deflated size, are refused (zip bombs).
# Deflated outputs are compressed with ISA-L (python-isal, the zlib API): a 0.5 MB CT data set takes 1.6 ms at
# its level 1 where zlib takes 13 ms at level 1 and 30 ms at level 6, for a stream within 1% of zlib level 6's
# (measured in one run). A hard dependency, so the same input gives the same bytes on every install.
DEFLATE_LEVEL = 1
cdef Py_ssize_t INFLATE_LIMIT = 1 << 30
cdef Py_ssize_t INFLATE_RATIO = 1000


cdef inline int vr_slot(uint16_t vr) noexcept nogil:
    cdef int a = (vr >> 8) - 65, b = (vr & 0xFF) - 65
    if a < 0 or a > 25 or b < 0 or b > 25:
        return -1
    return a * 26 + b


cdef str vr_name(uint16_t vr):
    return chr(vr >> 8) + chr(vr & 0xFF)


cdef uint16_t vr_code(str name):
    return (ord(name[0]) << 8) | ord(name[1])


# --- date shifting and age clamping in C (mirrors veil.plan.shift_date_value and clamp_age_value) ---------

cdef inline bint all_digits(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef inline int64_t num(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef int64_t v = 0
    cdef Py_ssize_t i
    for i in range(n):
        v = v * 10 + (p[i] - 48)
    return v


cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    if m <= 2:
        y -= 1
    cdef int64_t era = floordiv(y, 400)
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void civil_from_days(int64_t z, int64_t* y, int64_t* m, int64_t* d) noexcept nogil:
    z += 719468
    cdef int64_t era = floordiv(z, 146097)
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + 3 if mp < 10 else mp - 9
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline int days_in_month(int64_t y, int64_t m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef int shift_ymd(const uint8_t* p, Py_ssize_t n, int days, uint8_t* dst) noexcept nogil:
    """YYYY[MM[DD]] moved by days into dst (same length); -1 when it is not a valid date."""
    cdef int64_t y, m = 1, d = 1
    cdef uint8_t tmp[8]
    if (n != 4 and n != 6 and n != 8) or not all_digits(p, n):
        return -1
    y = num(p, 4)
    if n >= 6:
        m = num(p + 4, 2)
    if n == 8:
        d = num(p + 6, 2)
    if m < 1 or m > 12 or d < 1 or d > days_in_month(y, m):
        return -1
    civil_from_days(days_from_civil(y, m, d) + days, &y, &m, &d)
    if y < 0 or y > 9999:
        return -1
    tmp[0] = 48 + (y // 1000) % 10
    tmp[1] = 48 + (y // 100) % 10
    tmp[2] = 48 + (y // 10) % 10
    tmp[3] = 48 + y % 10
    tmp[4] = 48 + m // 10
    tmp[5] = 48 + m % 10
    tmp[6] = 48 + d // 10
    tmp[7] = 48 + d % 10
    memcpy(dst, tmp, n)
    return <int>n


cdef int shift_dt(const uint8_t* p, Py_ssize_t n, int days, uint8_t* dst) noexcept nogil:
    """One DT value: the date part moves, time, fraction and UTC offset stay; -1 when unparseable."""
    cdef Py_ssize_t body = n, whole, i, dot = -1
    if n >= 5 and (p[n - 5] == 43 or p[n - 5] == 45) and all_digits(p + n - 4, 4):
        body = n - 5
    for i in range(body):
        if p[i] == 46:
            dot = i
            break
    whole = dot if dot >= 0 else body
    if dot >= 0:
        if body - dot - 1 < 1 or body - dot - 1 > 6 or not all_digits(p + dot + 1, body - dot - 1):
            return -1
        if whole != 14:
            return -1
    if (whole != 4 and whole != 6 and whole != 8 and whole != 10 and whole != 12 and whole != 14) \
            or not all_digits(p, whole):
        return -1
    if shift_ymd(p, whole if whole < 8 else 8, days, dst) < 0:
        return -1
    if whole > 8:
        memcpy(dst + 8, p + 8, n - 8)
    elif n > whole:
        memcpy(dst + whole, p + whole, n - whole)
    return <int>n


cdef inline int shift_one(const uint8_t* p, Py_ssize_t n, bint is_dt, int days, uint8_t* dst) noexcept nogil:
    if is_dt:
        return shift_dt(p, n, days, dst)
    return shift_ymd(p, n, days, dst)


cdef Py_ssize_t range_split(const uint8_t* p, Py_ssize_t n, bint is_dt) noexcept nogil:
    """Index of the hyphen that separates a range, or -1 (mirrors plan._split_range; -2: not a range)."""
    cdef Py_ssize_t i, found = -1, count = 0
    if not is_dt:
        for i in range(n):
            if p[i] == 45:
                count += 1
                found = i
        return found if count == 1 else -1
    for i in range(n):
        if p[i] != 45:
            continue
        if n - i - 1 >= 4 and all_digits(p + i + 1, 4) and (n - i - 1 == 4 or p[i + 5] == 45) and i >= 4:
            continue
        return i
    return -1


cdef Py_ssize_t shift_value(const uint8_t* p, Py_ssize_t n, bint is_dt, int days, uint8_t* dst) noexcept nogil:
    """A whole DA/DT value (multi-valued, ranges): writes dst, returns its length or -1 (unparseable)."""
    cdef Py_ssize_t start = 0, stop, a, b, out = 0, cut
    cdef int r
    while True:
        stop = start
        while stop < n and p[stop] != 92:
            stop += 1
        a = start
        b = stop
        while a < b and (p[a] == 32 or p[a] == 0):
            a += 1
        while b > a and (p[b - 1] == 32 or p[b - 1] == 0):
            b -= 1
        if b > a:
            cut = range_split(p + a, b - a, is_dt)
            if cut < 0:
                r = shift_one(p + a, b - a, is_dt, days, dst + out)
                if r < 0:
                    return -1
                out += r
            else:
                if cut == 0 and b - a == 1:
                    return -1
                if cut > 0:
                    r = shift_one(p + a, cut, is_dt, days, dst + out)
                    if r < 0:
                        return -1
                    out += r
                dst[out] = 45
                out += 1
                if b - a - cut - 1 > 0:
                    r = shift_one(p + a + cut + 1, b - a - cut - 1, is_dt, days, dst + out)
                    if r < 0:
                        return -1
                    out += r
        if stop >= n:
            break
        dst[out] = 92
        out += 1
        start = stop + 1
    return out


cdef Py_ssize_t clamp_age(const uint8_t* p, Py_ssize_t n, int cap, uint8_t* dst) noexcept nogil:
    """An AS value at or over cap years becomes capY (e.g. 090Y); -1 when unparseable."""
    cdef Py_ssize_t a = 0, b = n
    cdef int64_t v
    cdef bint over
    while a < b and (p[a] == 32 or p[a] == 0):
        a += 1
    while b > a and (p[b - 1] == 32 or p[b - 1] == 0):
        b -= 1
    if b == a:
        return 0
    if b - a != 4 or not all_digits(p + a, 3):
        return -1
    v = num(p + a, 3)
    if p[a + 3] == 68:  # D
        over = 4 * v >= 1461 * cap
    elif p[a + 3] == 87:  # W
        over = 28 * v >= 1461 * cap
    elif p[a + 3] == 77:  # M
        over = v >= 12 * cap
    elif p[a + 3] == 89:  # Y
        over = v >= cap
    else:
        return -1
    if over:
        dst[0] = 48 + (cap // 100) % 10
        dst[1] = 48 + (cap // 10) % 10
        dst[2] = 48 + cap % 10
        dst[3] = 89
    else:
        memcpy(dst, p + a, 4)
    return 4


# --- element headers ------------------------------------------------------------------------------------

cdef struct Header:
    uint32_t tag
    uint16_t vr         # as written (explicit), or the dictionary's (implicit)
    uint16_t eff_vr     # the VR the Plan sees (dictionary VR for a known UN)
    uint32_t length
    Py_ssize_t hdr      # header size in bytes
    bint seq            # value is a sequence of items
    bint seq_explicit   # encoding of the items' data sets
    bint seq_little


cdef class RewriteResult:
    """One file's output: header bytes, the pixel slice of the input, the trailer, and what was done."""

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


cdef class Rewriter:
    """Applies one compiled Plan to whole files; reuse one per worker (not thread-safe: it keeps buffers).

    ``uid_fn(uid: bytes) -> bytes`` remaps one UID and ``id_fn(value: bytes) -> bytes`` makes one pseudonym;
    both are keyed functions (``veil.keys``) and are cached here per original value.
    """

    # compiled plan
    cdef uint32_t* pub_tags
    cdef uint8_t* pub_actions
    cdef int32_t* pub_args
    cdef int n_pub
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
    cdef readonly object plan
    # per-file state
    cdef const uint8_t* buf
    cdef Py_ssize_t n
    cdef Py_ssize_t base
    cdef str path
    cdef int shift_days
    cdef OutBuf out
    cdef OutBuf touched
    cdef Py_ssize_t counts[N_ACTIONS]
    cdef uint32_t path_tags[MAX_DEPTH + 1]
    cdef uint32_t path_items[MAX_DEPTH + 1]
    cdef bint has_pixels
    # A large file rewritten from its head and tail only: the top-level Pixel Data value (hole_len bytes) is
    # not in the buffer, which jumps from hole_at (where the value would start) to what follows it.
    cdef Py_ssize_t hole_at
    cdef Py_ssize_t hole_len
    cdef Py_ssize_t pixel_start
    cdef Py_ssize_t pixel_stop
    cdef Py_ssize_t out_at_pixels
    cdef bytes sop_instance_in
    cdef bytes sop_instance_out
    cdef bytes sop_class_in
    cdef bytes modality_out
    cdef bytes study_out
    cdef bytes series_out

    def __cinit__(self):
        self.hole_at = -1
        self.hole_len = 0
        self.pub_tags = NULL
        self.pub_actions = NULL
        self.pub_args = NULL
        self.mask_masks = NULL
        self.mask_values = NULL
        self.mask_actions = NULL
        self.mask_args = NULL
        self.priv_actions = NULL
        self.priv_args = NULL
        self.priv_keeps = NULL
        self.ins_tags = NULL
        self.n_ins = 0
        self.out.data = NULL
        self.out.length = 0
        self.out.capacity = 0
        self.touched.data = NULL
        self.touched.length = 0
        self.touched.capacity = 0

    def __dealloc__(self):
        free(self.pub_tags)
        free(self.pub_actions)
        free(self.pub_args)
        free(self.mask_masks)
        free(self.mask_values)
        free(self.mask_actions)
        free(self.mask_args)
        free(self.priv_actions)
        free(self.priv_args)
        free(self.priv_keeps)
        free(self.ins_tags)
        out_free(&self.out)
        out_free(&self.touched)

    def __init__(self, plan, uid_fn=None, id_fn=None, shift_fn=None):
        self.plan = plan
        self.uid_fn = uid_fn
        self.id_fn = id_fn
        self.shift_fn = shift_fn
        self.shift_cache = {}
        self.callback = plan.callback
        self.uid_cache = {}
        self.id_cache = {}
        self.values = []
        self.age_cap = int(plan.age_cap)
        if not 0 < self.age_cap < 1000:
            raise PlanError(f"age_cap must be between 1 and 999 years, not {self.age_cap}")
        self.default_public = int(Action(plan.default_public))
        self.default_private = int(Action(plan.default_private))
        self.dummies = {}
        for name, value in DUMMY_VALUES.items():
            self.dummies[vr_code(name)] = value.encode("ascii") if isinstance(value, str) else bytes(value)
        self._compile(plan)
        self._compile_inserts(plan)

    cdef _compile_inserts(self, plan):
        cdef int i
        elements = sorted(plan.insert, key=lambda e: e[0])
        tags = [int(e[0]) for e in elements]
        if len(set(tags)) != len(tags) or any(t >> 16 in (0x0002, 0xFFFE) or not t & 0xFFFF for t in tags):
            raise PlanError("inserted elements must be distinct data set tags (no File Meta, item or group length)")
        if 0x00080016 in tags or 0x00080018 in tags:
            raise PlanError("SOP Class and SOP Instance UIDs name the instance; the File Meta follows them, so "
                            "a Plan cannot insert them")
        self.n_ins = len(elements)
        self.ins_tags = <uint32_t*>malloc(sizeof(uint32_t) * (self.n_ins + 1))
        if self.ins_tags == NULL:
            raise MemoryError()
        for i in range(self.n_ins):
            self.ins_tags[i] = tags[i]
        self.ins_bytes = [[encode_inserted(e, explicit, little) for e in elements]
                          for explicit, little in ((False, True), (True, True), (True, False))]

    cdef int32_t _value_arg(self, rule) except -2:
        if Action(rule.action) != Action.REPLACE:
            return -1
        if rule.value is None:
            raise PlanError("a REPLACE rule needs a value")
        value = rule.value.encode("utf-8") if isinstance(rule.value, str) else bytes(rule.value)
        self.values.append(value)
        return len(self.values) - 1

    cdef _compile(self, plan):
        cdef int i
        items = sorted((int(t), r) for t, r in plan.tags.items() if not (int(t) >> 16) & 1)
        self.n_pub = len(items)
        self.pub_tags = <uint32_t*>malloc(sizeof(uint32_t) * (self.n_pub + 1))
        self.pub_actions = <uint8_t*>malloc(self.n_pub + 1)
        self.pub_args = <int32_t*>malloc(sizeof(int32_t) * (self.n_pub + 1))
        if self.pub_tags == NULL or self.pub_actions == NULL or self.pub_args == NULL:
            raise MemoryError()
        for i, (tag, rule) in enumerate(items):
            self.pub_tags[i] = tag
            self.pub_actions[i] = int(Action(rule.action))
            self.pub_args[i] = self._value_arg(rule)
        masks = list(plan.masks)
        self.n_mask = len(masks)
        self.mask_masks = <uint32_t*>malloc(sizeof(uint32_t) * (self.n_mask + 1))
        self.mask_values = <uint32_t*>malloc(sizeof(uint32_t) * (self.n_mask + 1))
        self.mask_actions = <uint8_t*>malloc(self.n_mask + 1)
        self.mask_args = <int32_t*>malloc(sizeof(int32_t) * (self.n_mask + 1))
        if self.mask_masks == NULL or self.mask_values == NULL or self.mask_actions == NULL \
                or self.mask_args == NULL:
            raise MemoryError()
        for i, (mask, value, rule) in enumerate(masks):
            self.mask_masks[i] = mask
            self.mask_values[i] = value
            self.mask_actions[i] = int(Action(rule.action))
            self.mask_args[i] = self._value_arg(rule)
        memset(self.vr_actions, A_NONE, 676)
        for name, action in plan.vr_defaults.items():
            if len(name) != 2 or vr_slot(vr_code(name)) < 0:
                raise PlanError(f"unknown VR {name!r} in vr_defaults")
            if Action(action) == Action.REPLACE:
                raise PlanError(f"vr_defaults[{name!r}]: REPLACE needs a value; name the tags instead")
            self.vr_actions[vr_slot(vr_code(name))] = int(Action(action))
        # Private rules: one 256-entry action row per (group, creator) block.
        blocks = {}
        for (group, creator, element), rule in plan.private.items():
            if not (group & 1) or not 0 <= element <= 0xFF:
                raise PlanError(f"private rule ({group:04X},{creator!r},{element:02X}) is not a private element")
            key = (group, creator.rstrip(" \x00").encode("latin-1"))
            blocks.setdefault(key, []).append((element, rule))
        self.private_index = {}
        nb = len(blocks)
        self.priv_actions = <uint8_t*>malloc(256 * nb + 1)
        self.priv_args = <int32_t*>malloc(sizeof(int32_t) * (256 * nb + 1))
        self.priv_keeps = <uint8_t*>malloc(nb + 1)
        if self.priv_actions == NULL or self.priv_args == NULL or self.priv_keeps == NULL:
            raise MemoryError()
        memset(self.priv_actions, A_NONE, 256 * nb + 1)
        for b, (key, rules) in enumerate(blocks.items()):
            self.private_index[key] = b
            self.priv_keeps[b] = 0
            for element, rule in rules:
                self.priv_actions[b * 256 + element] = int(Action(rule.action))
                self.priv_args[b * 256 + element] = self._value_arg(rule)
                if Action(rule.action) != Action.REMOVE:
                    self.priv_keeps[b] = 1

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

    # --- writing ----------------------------------------------------------------------------------------

    cdef inline int _emit_header(self, uint32_t tag, uint16_t vr, uint32_t length, bint explicit,
                                 bint little) except -1:
        cdef OutBuf* o = &self.out
        out_reserve(o, 12)
        wr16(o.data + o.length, tag >> 16, little)
        wr16(o.data + o.length + 2, tag & 0xFFFF, little)
        if not explicit:
            wr32(o.data + o.length + 4, length, little)
            o.length += 8
            return 0
        o.data[o.length + 4] = vr >> 8
        o.data[o.length + 5] = vr & 0xFF
        if vr_is_long(vr):
            o.data[o.length + 6] = 0
            o.data[o.length + 7] = 0
            wr32(o.data + o.length + 8, length, little)
            o.length += 12
        else:
            if length > 0xFFFF:
                raise PlanError(f"a value of {length} bytes does not fit VR {vr_name(vr)} "
                                f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
            wr16(o.data + o.length + 6, length, little)
            o.length += 8
        return 0

    cdef int _emit_value(self, uint32_t tag, Header* h, const uint8_t* value, Py_ssize_t n, bint explicit,
                         bint little) except -1:
        """An element with a new value, padded to even length (NUL for UI and binary, space for text)."""
        cdef bint odd = n & 1
        self._emit_header(tag, h.vr, <uint32_t>(n + odd), explicit, little)
        out_put(&self.out, value, n)
        if odd:
            out_byte(&self.out, 32 if vr_is_text(h.eff_vr) else 0)
        return 0

    cdef inline void _record(self, uint32_t tag, int action, int depth) noexcept:
        cdef int i
        self.counts[action] += 1
        if action == A_KEEP or action == A_RECURSE:
            return
        cdef OutBuf* t = &self.touched
        try:
            out_reserve(t, 6 + 8 * depth)
        except MemoryError:
            return
        t.data[t.length] = depth
        t.length += 1
        for i in range(depth):
            wr32(t.data + t.length, self.path_tags[i], True)
            wr32(t.data + t.length + 4, self.path_items[i], True)
            t.length += 8
        wr32(t.data + t.length, tag, True)
        t.data[t.length + 4] = action
        t.length += 5

    cdef bint _emit_inserts(self, uint32_t upto, bint explicit, bint little) except -1:
        """Writes the inserted elements with tags up to ``upto``; True when one of them has that very tag."""
        cdef bint same = False
        cdef list encoded
        if self.ins_next >= self.n_ins or self.ins_tags[self.ins_next] > upto:
            return False
        encoded = self.ins_bytes[0 if not explicit else (1 if little else 2)]
        while self.ins_next < self.n_ins and self.ins_tags[self.ins_next] <= upto:
            value = <bytes>encoded[self.ins_next]
            out_put(&self.out, <const uint8_t*>PyBytes_AS_STRING(value), len(value))
            same = self.ins_tags[self.ins_next] == upto
            self._record(self.ins_tags[self.ins_next], A_REPLACE, 0)
            self.ins_next += 1
        return same

    # --- the walk ---------------------------------------------------------------------------------------

    cdef inline int _public_action(self, uint32_t tag, uint16_t vr, int32_t* arg) noexcept:
        cdef int lo = 0, hi = self.n_pub - 1, mid, i, slot
        while lo <= hi:
            mid = (lo + hi) >> 1
            if self.pub_tags[mid] == tag:
                arg[0] = self.pub_args[mid]
                return self.pub_actions[mid]
            if self.pub_tags[mid] < tag:
                lo = mid + 1
            else:
                hi = mid - 1
        for i in range(self.n_mask):
            if (tag & self.mask_masks[i]) == self.mask_values[i]:
                arg[0] = self.mask_args[i]
                return self.mask_actions[i]
        slot = vr_slot(vr)
        if slot >= 0 and self.vr_actions[slot] != A_NONE:
            return self.vr_actions[slot]
        return self.default_public

    cdef Py_ssize_t _dataset(self, Py_ssize_t pos, Py_ssize_t end, bint undefined, bint explicit, bint little,
                             int depth) except -1:
        """Rewrites the elements of one data set in [pos, end); for an undefined-length item, up to and
        including its delimiter (which is not written here). Returns the position after it."""
        cdef Header h
        cdef uint32_t tag
        cdef uint16_t group, elem
        cdef int action, creator_id
        cdef int32_t arg
        cdef Py_ssize_t vpos, vend, before
        cdef int creators[256]
        cdef uint16_t creators_group = 0
        while pos < end or undefined:
            self._header(pos, end, explicit, little, &h)
            tag = h.tag
            group = tag >> 16
            elem = tag & 0xFFFF
            if group == 0xFFFE:
                if tag == TAG_ITEM_DELIM and undefined:
                    return pos + 8
                self._fail(pos, f"unexpected ({group:04X},{elem:04X}) in a data set")
            vpos = pos + h.hdr
            vend = self._skip_value(vpos, end, &h, depth) if h.length == UNDEFINED else vpos + h.length
            if vpos == self.hole_at:
                vend = vpos  # the Pixel Data value is not in the buffer: what follows it is
            if depth == 0 and self._emit_inserts(tag, explicit, little):
                pos = vend  # replaced by an inserted element
                continue
            arg = -1
            # Which action (veil.plan: lookup order)
            if elem == 0:
                action = A_REMOVE  # group lengths (PS3.5 7.2) are dropped
            elif group & 1:
                if group != creators_group:
                    memset(creators, 0xFF, sizeof(creators))
                    creators_group = group
                if 0x10 <= elem <= 0xFF:
                    creator = self.buf[vpos:vend].rstrip(b" \x00")
                    creator_id = self.private_index.get((group, creator), -1)
                    creators[elem] = creator_id
                    action = A_KEEP if creator_id >= 0 and self.priv_keeps[creator_id] else self.default_private
                elif elem >= 0x1000 and creators[elem >> 8] >= 0:
                    creator_id = creators[elem >> 8]
                    action = self.priv_actions[creator_id * 256 + (elem & 0xFF)]
                    if action == A_NONE:
                        action = self.default_private
                    else:
                        arg = self.priv_args[creator_id * 256 + (elem & 0xFF)]
                else:
                    action = self.default_private
            else:
                action = self._public_action(tag, h.eff_vr, &arg)
            if depth == 0 and tag == 0x00080016:
                self.sop_class_in = bytes(self.buf[vpos:vend])
            if depth == 0 and (tag == 0x00080018 or tag == 0x00080060 or tag == 0x0020000D or tag == 0x0020000E):
                # The File Meta must name the SOP Instance UID the output data set carries (PS3.10 7.1); the
                # output's modality, study and series go to the audit (the values as written, new UIDs).
                if tag == 0x00080018:
                    self.sop_instance_in = bytes(self.buf[vpos:vend])
                before = self.out.length
                self._apply(pos, vpos, vend, &h, action, arg, explicit, little, depth)
                if self.out.length > before and not h.seq:
                    before += 12 if explicit and vr_is_long(h.vr) else 8
                    written = PyBytes_FromStringAndSize(<const char*>(self.out.data + before),
                                                        self.out.length - before)
                    if tag == 0x00080018:
                        self.sop_instance_out = written
                    elif tag == 0x00080060:
                        self.modality_out = written
                    elif tag == 0x0020000D:
                        self.study_out = written
                    else:
                        self.series_out = written
            else:
                self._apply(pos, vpos, vend, &h, action, arg, explicit, little, depth)
            pos = vend
        if depth == 0:
            self._emit_inserts(0xFFFFFFFF, explicit, little)
        return pos

    cdef int _apply(self, Py_ssize_t pos, Py_ssize_t vpos, Py_ssize_t vend, Header* h, int action, int32_t arg,
                    bint explicit, bint little, int depth) except -1:
        cdef uint32_t tag = h.tag
        cdef Py_ssize_t n = vend - vpos, start, r
        cdef uint8_t* tmp
        cdef bint is_pixels
        if vpos == self.hole_at and vpos >= 0 and action != A_REMOVE and action != A_KEEP and action != A_EMPTY:
            raise _NeedWholeFile()  # an action that reads or replaces the value: the whole file is needed
        if action == A_REMOVE:
            self._record(tag, A_REMOVE, depth)
            return 0
        if h.seq:
            if action == A_KEEP:
                self._copy(pos, vpos, vend, h, explicit, little)
            elif action == A_RECURSE:
                self._sequence(vpos, vend, h, explicit, little, depth)
            else:
                # Any value action on a sequence empties it (fail closed).
                self._emit_header(tag, h.vr, 0, explicit, little)
                action = A_EMPTY
            self._record(tag, action, depth)
            return 0
        if action == A_KEEP:
            is_pixels = depth == 0 and not self.has_pixels and (tag == 0x7FE00010 or tag == 0x7FE00008
                                                               or tag == 0x7FE00009) and not (n & 1)
            if is_pixels:
                # Header up to here, then the value as a slice of the input (zero copy).
                out_put(&self.out, self.buf + pos, vpos - pos)
                self.has_pixels = True
                self.pixel_start = vpos
                self.pixel_stop = vend + (self.hole_len if vpos == self.hole_at else 0)
                self.out_at_pixels = self.out.length
            elif vpos == self.hole_at:
                raise _NeedWholeFile()
            else:
                self._copy(pos, vpos, vend, h, explicit, little)
            self._record(tag, A_KEEP, depth)
            return 0
        if action == A_RECURSE:
            self._record(tag, A_REMOVE, depth)
            return 0
        if h.length == UNDEFINED:
            # Encapsulated pixel data nested in an item: any change empties it.
            self._emit_header(tag, h.vr, 0, explicit, little)
            self._record(tag, A_EMPTY, depth)
            return 0
        if action == A_EMPTY:
            self._emit_header(tag, h.vr, 0, explicit, little)
        elif action == A_DUMMY:
            self._emit_bytes(tag, h, self.dummies.get(h.eff_vr, b""), explicit, little, True)
        elif action == A_REPLACE:
            self._emit_bytes(tag, h, self.values[arg], explicit, little, True)
        elif action == A_UID:
            self._emit_bytes(tag, h, self._map_values(vpos, vend, True), explicit, little, False)
        elif action == A_PSEUDO:
            self._emit_bytes(tag, h, self._map_values(vpos, vend, False), explicit, little, False)
        elif action == A_SHIFT or action == A_AGE:
            tmp = <uint8_t*>malloc(n + 8)
            if tmp == NULL:
                raise MemoryError()
            try:
                if action == A_AGE:
                    r = clamp_age(self.buf + vpos, n, self.age_cap, tmp)
                elif h.eff_vr == VR_DA or h.eff_vr == VR_DT:
                    r = shift_value(self.buf + vpos, n, h.eff_vr == VR_DT, self.shift_days, tmp)
                else:
                    r = -1
                if r < 0:
                    action = A_EMPTY
                    self._emit_header(tag, h.vr, 0, explicit, little)
                else:
                    self._emit_value(tag, h, tmp, r, explicit, little)
            finally:
                free(tmp)
        elif action == A_CALL:
            if self.callback is None:
                raise PlanError("a CALL rule needs a Plan callback")
            new = self.callback(tag, vr_name(h.eff_vr), bytes(self.buf[vpos:vend]))
            if new is None:
                action = A_REMOVE
            else:
                self._emit_bytes(tag, h, bytes(new), explicit, little, False)
        else:
            raise PlanError(f"unknown action {action}")
        self._record(tag, action, depth)
        return 0

    cdef int _emit_bytes(self, uint32_t tag, Header* h, bytes value, bint explicit, bint little,
                         bint swap) except -1:
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(value)
        cdef Py_ssize_t n = len(value), i, j
        cdef int unit = 2 if h.eff_vr == VR_AT else vr_unit(h.eff_vr)  # AT is a pair of 16-bit values
        cdef uint8_t* q
        if swap and not little and unit > 1 and n % unit == 0:
            # Binary values in Plans are little endian; a big-endian file gets them swapped per value.
            self._emit_header(tag, h.vr, <uint32_t>n, explicit, little)
            out_reserve(&self.out, n)
            q = self.out.data + self.out.length
            for i in range(0, n, unit):
                for j in range(unit):
                    q[i + j] = p[i + unit - 1 - j]
            self.out.length += n
            return 0
        return self._emit_value(tag, h, p, n, explicit, little)

    cdef bytes _map_values(self, Py_ssize_t vpos, Py_ssize_t vend, bint uids):
        """UID or PSEUDO: each backslash-separated component, stripped, through the keyed function."""
        cdef const uint8_t* p = self.buf
        cdef Py_ssize_t start = vpos, stop, a, b
        cdef dict cache = self.uid_cache if uids else self.id_cache
        fn = self.uid_fn if uids else self.id_fn
        if fn is None:
            raise PlanError("a UID rule needs uid_fn" if uids else "a PSEUDO rule needs id_fn")
        parts = []
        while True:
            stop = start
            while stop < vend and p[stop] != 92:
                stop += 1
            a = start
            b = stop
            while a < b and (p[a] == 32 or p[a] == 0):
                a += 1
            while b > a and (p[b - 1] == 32 or p[b - 1] == 0):
                b -= 1
            if b == a:
                parts.append(b"")
            elif uids and b - a >= STD_PREFIX_LEN and memcmp(p + a, STD_PREFIX, STD_PREFIX_LEN) == 0:
                parts.append(PyBytes_FromStringAndSize(<const char*>(p + a), b - a))
            else:
                key = PyBytes_FromStringAndSize(<const char*>(p + a), b - a)
                new = cache.get(key)
                if new is None:
                    new = fn(key)
                    if isinstance(new, str):
                        new = new.encode("ascii")
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[key] = new
                parts.append(new)
            if stop >= vend:
                break
            start = stop + 1
        if len(parts) == 1:
            return parts[0]
        return b"\\".join(parts)

    cdef int _copy(self, Py_ssize_t pos, Py_ssize_t vpos, Py_ssize_t vend, Header* h, bint explicit,
                   bint little) except -1:
        """The element byte for byte; an odd defined length is padded to even (PS3.5 7.1.1)."""
        if h.length != UNDEFINED and (h.length & 1):
            if h.length == 0xFFFF and explicit and not vr_is_long(h.vr):
                self._fail(pos, f"odd length 65535 of ({h.tag >> 16:04X},{h.tag & 0xFFFF:04X}) cannot be padded")
            self._emit_header(h.tag, h.vr, h.length + 1, explicit, little)
            out_put(&self.out, self.buf + vpos, vend - vpos)
            out_byte(&self.out, 32 if vr_is_text(h.eff_vr) else 0)
            return 0
        out_put(&self.out, self.buf + pos, vend - pos)
        return 0

    cdef int _sequence(self, Py_ssize_t vpos, Py_ssize_t vend, Header* h, bint explicit, bint little,
                       int depth) except -1:
        """Rewrites each item of a sequence; lengths of defined-length items and sequences are recomputed."""
        cdef bint undefined = h.length == UNDEFINED
        cdef bint ie = h.seq_explicit, il = h.seq_little
        cdef Py_ssize_t pos = vpos, seq_len_at, item_len_at, end = vend if not undefined else self.n
        cdef uint32_t tag, length, item = 0
        if depth + 1 > MAX_DEPTH:
            self._fail(vpos, f"sequences nested deeper than {MAX_DEPTH}")
        self._emit_header(h.tag, h.vr, UNDEFINED if undefined else 0, explicit, little)
        seq_len_at = self.out.length - 4
        self.path_tags[depth] = h.tag
        while True:
            if undefined:
                if pos + 8 > end:
                    self._fail(pos, "truncated sequence (no sequence delimiter)")
            elif pos >= end:
                break
            elif pos + 8 > end:
                self._fail(pos, "truncated item header")
            tag = rdtag(self.buf + pos, il)
            length = rd32(self.buf + pos + 4, il)
            if undefined and tag == TAG_SEQ_DELIM:
                pos += 8
                break
            if tag != TAG_ITEM:
                self._fail(pos, f"expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            out_u16(&self.out, 0xFFFE, il)
            out_u16(&self.out, 0xE000, il)
            out_u32(&self.out, length if length == UNDEFINED else 0, il)
            item_len_at = self.out.length - 4
            self.path_items[depth] = item
            pos += 8
            ie = self._item_explicit(pos, end if length == UNDEFINED else pos + length, h.seq_explicit, il)
            if length == UNDEFINED:
                pos = self._dataset(pos, end, True, ie, il, depth + 1)
                out_u16(&self.out, 0xFFFE, il)
                out_u16(&self.out, 0xE00D, il)
                out_u32(&self.out, 0, il)
            else:
                if length > <uint32_t>(end - pos):
                    self._fail(pos - 8, "item runs past the end of its sequence")
                self._dataset(pos, pos + length, False, ie, il, depth + 1)
                pos += length
                wr32(self.out.data + item_len_at, <uint32_t>(self.out.length - item_len_at - 4), il)
            item += 1
        if undefined:
            out_u16(&self.out, 0xFFFE, il)
            out_u16(&self.out, 0xE0DD, il)
            out_u32(&self.out, 0, il)
        else:
            wr32(self.out.data + seq_len_at, <uint32_t>(self.out.length - seq_len_at - 4), little)
        return 0

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

    # --- files ------------------------------------------------------------------------------------------

    def rewrite(self, const uint8_t[::1] data not None, shift_days=None, str path=""):
        """Rewrites one whole file (bytes, memoryview or mmap); returns a :class:`RewriteResult`.

        ``shift_days`` moves every DA/DT the Plan shifts; when None, the Rewriter's ``shift_fn(patient_id)``
        decides from the file's PatientID (found by a header-only scan, since dates come before it), else 0.
        """
        cdef Py_ssize_t ds_pos, i
        cdef bint explicit, little, deflated
        cdef Meta meta = _read_meta(data, path)
        ds_pos = meta.dataset_offset
        explicit = meta.explicit
        little = meta.little
        deflated = meta.deflated
        self.path = path
        self.shift_days = 0 if shift_days is None else shift_days
        self.out.length = 0
        self.touched.length = 0
        for i in range(N_ACTIONS):
            self.counts[i] = 0
        self.has_pixels = False
        self.ins_next = 0
        self.sop_instance_in = None
        self.sop_instance_out = None
        self.sop_class_in = None
        self.modality_out = None
        self.study_out = None
        self.series_out = None
        if deflated:
            inflated = inflate(data[ds_pos:], path, ds_pos)
            source = inflated
            self.base = 0
            self._walk(inflated, 0, explicit, little, shift_days is None)
        else:
            source = data
            self.base = 0
            self._walk(data, ds_pos, explicit, little, shift_days is None)
        return self._result(source, data, meta, deflated)

    def rewrite_file(self, str src not None, str dst not None, Py_ssize_t limit, shift_days=None):
        """One file end to end, its system calls made here; the output appears whole or not at all.

        A file of ``limit`` bytes or fewer is read whole, rewritten and written with one ``writev``. A larger
        one is mapped: its header is rewritten from the mapping, the header written, the Pixel Data value copied
        from the input by the kernel (``copy_file_range``, else ``sendfile``, else a buffer), then the trailer.
        The output is written to ``.NAME.veil-tmp`` beside ``dst`` (a fixed name: a retried or resumed write
        replaces it, never leaves another), the folders above it made when missing, then renamed to ``dst``.
        Returns ``(result, input_bytes, output_bytes)``; the result of a mapped file has no ``pixels`` (the
        mapping is gone), its ``pixel_range`` says where they were. An unreadable input or a failed write raises
        OSError (errno and path set; the temporary file removed); a bad file raises MalformedDicom.
        """
        cdef bytes bsrc = src.encode("utf-8", "surrogateescape")
        cdef bytes bdst = dst.encode("utf-8", "surrogateescape")
        cdef Py_ssize_t slash = bdst.rfind(b"/")
        cdef bytes btmp = bdst[:slash + 1] + b"." + bdst[slash + 1:] + b".veil-tmp"
        tmp = btmp.decode("utf-8", "surrogateescape")
        cdef const char* csrc = bsrc
        cdef int fd
        cdef struct_stat st
        cdef Py_ssize_t size, got = 0, r
        cdef char* p
        cdef void* mapped = MAP_FAILED
        cdef bytes data
        with nogil:
            fd = c_open(csrc, O_RDONLY | O_CLOEXEC)
        if fd < 0:
            _raise_errno(errno, src)
        try:
            if fstat(fd, &st) != 0:
                _raise_errno(errno, src)
            if not S_ISREG(st.st_mode):
                raise MalformedDicom(src, 0, "not a regular file")
            size = st.st_size
            if size == 0:
                raise MalformedDicom(src, 0, "empty file")
            if size > limit:
                done = self._rewrite_around_pixels(fd, size, src, shift_days)
                if done is not None:
                    return done[0], size, _write_copy_and_rename(<RewriteResult>done[0], fd, btmp, bdst, tmp)
                result = None
                with nogil:
                    mapped = mmap(NULL, <size_t>size, PROT_READ, MAP_SHARED, fd, 0)
                if mapped == MAP_FAILED:
                    _raise_errno(errno, src)
                try:
                    result = self.rewrite(<uint8_t[:size]><uint8_t*>mapped, shift_days, src)
                    written = _write_copy_and_rename(result, fd, btmp, bdst, tmp)
                finally:
                    if result is not None:
                        (<RewriteResult>result).pixels = None  # a view of the mapping, about to go
                    munmap(mapped, <size_t>size)
                return result, size, written
            data = PyBytes_FromStringAndSize(NULL, size)
            p = PyBytes_AS_STRING(data)
            while got < size:
                with nogil:
                    r = read(fd, p + got, size - got)
                if r < 0:
                    if errno == EINTR:
                        continue
                    _raise_errno(errno, src)
                if r == 0:
                    break  # the file shrank while it was read: parse what is there (a truncated file fails)
                got += r
        finally:
            close(fd)
        if got < size:
            data = data[:got]
        result = self.rewrite(data, shift_days, src)
        return result, got, _write_and_rename(result, btmp, bdst, tmp)

    cdef _rewrite_around_pixels(self, int fd, Py_ssize_t size, str src, shift_days):
        """A large file rewritten from its head and what follows its Pixel Data value, never reading the value:
        ``(result,)``, or None when this cannot be done (deflated, encapsulated or odd-length pixels, a head
        that does not reach the Pixel Data element, an action that needs the value, a file without a SOP
        Instance UID, anything malformed: the caller maps the whole file, which gives the same output or the
        proper error)."""
        cdef Py_ssize_t head_len = min(size, HEAD_BYTES), got, start, length, tail_len, r
        cdef bytes head = PyBytes_FromStringAndSize(NULL, head_len)
        cdef bytes joined
        cdef char* p
        got = _pread_fully(fd, PyBytes_AS_STRING(head), head_len, 0)
        if got != head_len:
            return None
        start, length = self._locate_pixels(head, size, src)
        if length <= 0:
            return None
        tail_len = size - (start + length)
        joined = PyBytes_FromStringAndSize(NULL, start + tail_len)
        p = PyBytes_AS_STRING(joined)
        memcpy(p, PyBytes_AS_STRING(head), start)
        if tail_len and _pread_fully(fd, p + start, tail_len, start + length) != tail_len:
            return None
        self.hole_at = start
        self.hole_len = length
        try:
            return (self.rewrite(joined, shift_days, src),)
        except (_NeedWholeFile, MalformedDicom):
            return None
        finally:
            self.hole_at = -1
            self.hole_len = 0

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

    cdef _walk(self, const uint8_t[::1] buf, Py_ssize_t pos, bint explicit, bint little, bint find_shift):
        if buf.shape[0] == 0:
            self._fail(0, "empty data set")
        self.buf = &buf[0]
        self.n = buf.shape[0]
        if find_shift and self.shift_fn is not None:
            patient_id = self._find_top_level(pos, 0x00100020, explicit, little)
            days = self.shift_cache.get(patient_id)
            if days is None:
                days = self.shift_fn(patient_id)
                if len(self.shift_cache) >= CACHE_LIMIT:
                    self.shift_cache.clear()
                self.shift_cache[patient_id] = days
            self.shift_days = days
        self._dataset(pos, self.n, False, explicit, little, 0)

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

    cdef RewriteResult _result(self, source, data, Meta meta, bint deflated):
        cdef RewriteResult res = RewriteResult()
        cdef Py_ssize_t head_len, pixel_len
        cdef char* out
        sop_class = meta.sop_class_uid or _strip_uid(self.sop_class_in)
        sop_instance = _strip_uid(self.sop_instance_out)
        if not sop_instance:
            # Not in the output: name the instance by the remapped original, as the data set would have.
            original = _strip_uid(self.sop_instance_in) or meta.sop_instance_uid
            if not original:
                # No SOP Instance UID anywhere (old ACR-NEMA style files): name the output by the keyed UID of
                # the input's digest, so the same input always gets the same, non-identifying UID.
                if self.hole_at >= 0:
                    raise _NeedWholeFile()
                original = "sha256:" + hashlib.sha256(data).hexdigest()
            if not original.isascii():
                self._fail(0, "SOP Instance UID holds characters that are not ASCII")
            sop_instance = self._map_one_uid(original)
        if not (sop_class.isascii() and sop_instance.isascii()):
            self._fail(0, "SOP Class or SOP Instance UID holds characters that are not ASCII")
        res.transfer_syntax = meta.transfer_syntax
        res.sop_instance_uid = sop_instance
        res.sop_class_uid = sop_class
        res.modality = _strip_uid(self.modality_out)
        res.study_instance_uid = _strip_uid(self.study_out)
        res.series_instance_uid = _strip_uid(self.series_out)
        memcpy(res._counts, self.counts, sizeof(self.counts))
        res._touched = PyBytes_FromStringAndSize(<const char*>self.touched.data, self.touched.length)
        if deflated:
            if self.has_pixels:
                # The data set whole in one allocation (header, the inflated pixels, trailer): half a megabyte
                # copied once, not three times.
                pixel_len = self.pixel_stop - self.pixel_start
                dataset = PyBytes_FromStringAndSize(NULL, self.out.length + pixel_len)
                out = PyBytes_AS_STRING(dataset)
                memcpy(out, self.out.data, self.out_at_pixels)
                memcpy(out + self.out_at_pixels, PyBytes_AS_STRING(source) + self.pixel_start, pixel_len)
                memcpy(out + self.out_at_pixels + pixel_len, self.out.data + self.out_at_pixels,
                       self.out.length - self.out_at_pixels)
            else:
                dataset = PyBytes_FromStringAndSize(<const char*>self.out.data, self.out.length)
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
        head_len = self.out_at_pixels if self.has_pixels else self.out.length
        res.header = _build_header(sop_class, sop_instance, meta.transfer_syntax, self.out.data, head_len)
        if self.has_pixels:
            res.pixels = memoryview(data)[self.pixel_start:self.pixel_stop] if self.hole_at < 0 else None
            res.pixel_range = (self.pixel_start, self.pixel_stop)
            res.trailer = PyBytes_FromStringAndSize(<const char*>(self.out.data + head_len),
                                                    self.out.length - head_len)
        else:
            res.pixels = None
            res.pixel_range = None
            res.trailer = b""
        return res

    cdef str _map_one_uid(self, str uid):
        if uid.startswith(STANDARD_UID_PREFIX):
            return uid
        key = uid.encode("ascii")
        new = self.uid_cache.get(key)
        if new is None:
            if self.uid_fn is None:
                self._fail(0, "cannot remap the SOP Instance UID without uid_fn")
            new = self.uid_fn(key)
            if isinstance(new, str):
                new = new.encode("ascii")
        return new.decode("ascii")


cdef int _raise_errno(int err, str path) except -1:
    raise OSError(err, os.strerror(err), path)


cdef Py_ssize_t _write_and_rename(RewriteResult result, bytes btmp, bytes bdst, str tmp) except -1:
    """Header, pixels, trailer to ``btmp`` (one writev, a loop for short writes), closed, renamed to ``bdst``.
    On any failure the temporary file is removed and OSError raised."""
    cdef Py_buffer views[3]
    cdef iovec iov[3]
    cdef int n = 0, i, fd, err = 0
    cdef Py_ssize_t total = 0, done = 0, r, skip
    cdef const char* ctmp = btmp
    cdef const char* cdst = bdst
    parts = result.parts()
    for obj in parts:
        PyObject_GetBuffer(obj, &views[n], PyBUF_SIMPLE)
        iov[n].iov_base = views[n].buf
        iov[n].iov_len = views[n].len
        total += views[n].len
        n += 1
    try:
        with nogil:
            fd = _open_temporary(ctmp, &err)
            if fd >= 0:
                i = 0
                while done < total:
                    r = writev(fd, &iov[i], n - i)
                    if r < 0:
                        if errno == EINTR:
                            continue
                        err = errno
                        break
                    if r == 0:
                        err = EIO  # no progress and no error: give up rather than spin
                        break
                    done += r
                    # Advance past what was written (a short write is rare, but finish it).
                    while i < n and <Py_ssize_t>iov[i].iov_len <= r:
                        r -= iov[i].iov_len
                        i += 1
                    if i < n and r:
                        iov[i].iov_base = <char*>iov[i].iov_base + r
                        iov[i].iov_len -= r
                err = _finish_temporary(fd, ctmp, cdst, err)
    finally:
        for i in range(n):
            PyBuffer_Release(&views[i])
    if err != 0:
        _raise_errno(err, tmp)
    return done


cdef Py_ssize_t _write_copy_and_rename(RewriteResult result, int src_fd, bytes btmp, bytes bdst,
                                        str tmp) except -1:
    """Header, the pixel range copied from ``src_fd`` by the kernel, trailer, to ``btmp``; closed, renamed to
    ``bdst``. On any failure the temporary file is removed and OSError raised."""
    cdef const char* ctmp = btmp
    cdef const char* cdst = bdst
    cdef const char* head = result.header
    cdef const char* tail = result.trailer
    cdef Py_ssize_t head_len = len(result.header), tail_len = len(result.trailer)
    cdef int64_t start = 0, count = 0
    cdef int fd, err = 0
    if result.pixel_range is not None:
        start = result.pixel_range[0]
        count = result.pixel_range[1] - start
    with nogil:
        fd = _open_temporary(ctmp, &err)
        if fd >= 0:
            err = _write_fully(fd, head, head_len)
            if err == 0 and count > 0:
                err = veil_copy_range(src_fd, fd, start, count)
            if err == 0 and tail_len:
                err = _write_fully(fd, tail, tail_len)
            err = _finish_temporary(fd, ctmp, cdst, err)
    if err != 0:
        _raise_errno(err, tmp)
    return head_len + count + tail_len


cdef int _finish_temporary(int fd, const char* tmp, const char* dst, int err) noexcept nogil:
    """Closes the temporary output; renames it to ``dst`` when everything before went well (``err`` 0), else
    removes it. Returns the first error."""
    if close(fd) != 0 and err == 0:
        err = errno
    if err == 0 and rename(tmp, dst) != 0:
        err = errno
    if err != 0:
        unlink(tmp)
    return err


cdef int _open_temporary(const char* path, int* err) noexcept nogil:
    """The temporary output, created or truncated (never through a symbolic link), the folders above it made
    when missing; -1 with ``err`` set on failure."""
    cdef int fd = c_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
    if fd < 0 and errno == ENOENT:
        err[0] = veil_make_parents(path)
        if err[0] != 0:
            return -1
        fd = c_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
    err[0] = errno if fd < 0 else 0
    return fd


cdef Py_ssize_t _pread_fully(int fd, char* p, Py_ssize_t n, Py_ssize_t offset) noexcept nogil:
    """Bytes read at ``offset`` (fewer than ``n`` at the end of the file), or -1 on an error."""
    cdef Py_ssize_t got = 0, r
    while got < n:
        r = pread(fd, p + got, n - got, offset + got)
        if r < 0:
            if errno == EINTR:
                continue
            return -1
        if r == 0:
            break
        got += r
    return got


cdef int _write_fully(int fd, const char* p, Py_ssize_t n) noexcept nogil:
    """0, or the errno of a failed write (EIO for one that makes no progress)."""
    cdef Py_ssize_t r
    while n > 0:
        r = write(fd, p, n)
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return EIO
        p += r
        n -= r
    return 0


cdef str _strip_uid(value):
    if value is None:
        return ""
    return bytes(value).strip(b" \x00").decode("ascii", "replace")


# --- File Meta ------------------------------------------------------------------------------------------

cdef class Meta:
    """What the File Meta (or its absence) says about the data set that follows."""

    cdef readonly Py_ssize_t dataset_offset
    cdef readonly str transfer_syntax
    cdef readonly bint explicit
    cdef readonly bint little
    cdef readonly bint deflated
    cdef readonly bint had_meta
    cdef readonly str sop_class_uid
    cdef readonly str sop_instance_uid


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


cdef bytes IMPLEMENTATION_CLASS_UID_B = IMPLEMENTATION_CLASS_UID.encode("ascii")
cdef bytes IMPLEMENTATION_VERSION_NAME_B = IMPLEMENTATION_VERSION_NAME.encode("ascii")


def build_meta(str sop_class, str sop_instance, str transfer_syntax):
    """Preamble, ``DICM`` and a File Meta group written anew (PS3.10 7.1), group length right."""
    return _build_header(sop_class, sop_instance, transfer_syntax, NULL, 0)


# --- listing --------------------------------------------------------------------------------------------

SCAN_FILE = 0       # a regular file; the value is its size
SCAN_DIRECTORY = 1  # a directory (not a symbolic link)
SCAN_SYMLINK = 2    # a symbolic link, not followed
SCAN_OTHER = 3      # anything else (device, FIFO, socket)
SCAN_ERROR = 4      # lstat failed; the value is its errno


def scan_directory(str path not None):
    """The entries of one directory, unsorted, as ``(name, kind, value)`` (kinds above), "." and ".." left out.

    The listing of ``veil run``: one ``readdir`` pass, and an ``lstat`` relative to the open directory for
    each regular file (its size) and each entry whose type the file system does not report, nothing for the
    others. A directory that cannot be opened raises OSError."""
    cdef bytes bpath = path.encode("utf-8", "surrogateescape")
    cdef const char* cpath = bpath
    cdef DIR* d
    cdef dirent* ent
    cdef struct_stat st
    cdef int fd, kind, err
    cdef long long value
    cdef list found = []
    with nogil:
        d = opendir(cpath)
    if d == NULL:
        _raise_errno(errno, path)
    try:
        fd = dirfd(d)
        while True:
            with nogil:
                ent = veil_readdir(d, &err)
            if ent == NULL:
                if err != 0:
                    _raise_errno(err, path)
                break
            name = ent.d_name
            if name[0] == b"."[0] and (name[1] == 0 or (name[1] == b"."[0] and name[2] == 0)):
                continue
            kind = ent.d_type
            value = 0
            if kind == DT_DIR:
                kind = SCAN_DIRECTORY
            elif kind == DT_LNK:
                kind = SCAN_SYMLINK
            elif kind == DT_REG or kind == DT_UNKNOWN:
                if fstatat(fd, ent.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0:
                    kind = SCAN_ERROR
                    value = errno
                elif S_ISREG(st.st_mode):
                    kind = SCAN_FILE
                    value = st.st_size
                elif S_ISDIR(st.st_mode):
                    kind = SCAN_DIRECTORY
                elif S_ISLNK(st.st_mode):
                    kind = SCAN_SYMLINK
                else:
                    kind = SCAN_OTHER
            else:
                kind = SCAN_OTHER
            found.append((PyUnicode_DecodeFSDefault(ent.d_name), kind, value))
    finally:
        closedir(d)
    return found


# --- peek -----------------------------------------------------------------------------------------------

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


cdef inline bint _peek_wanted(uint32_t tag) noexcept:
    cdef int i
    for i in range(_PEEK_N):
        if _PEEK_ARRAY[i] == tag:
            return True
    return False


def peek(const uint8_t[::1] data not None, str path=""):
    """The values later stages need, from a walk of the top level that stops after (0028,0301).

    Returns a dict: transfer_syntax, patient_id, patient_name, patient_birth_date, patient_address,
    patient_telephone_numbers, accession_number, institution_name, referring_physician_name, station_name
    (held in memory only, for cleaning free text), study/series/sop instance UIDs, sop_class_uid,
    frame_of_reference_uid, modality, manufacturer, manufacturer_model_name, software_versions, image_type,
    rows, columns, burned_in_annotation, specific_character_set, study_date (strings stripped; rows and
    columns as int or None). Raises MalformedDicom like ``Rewriter.rewrite``.
    """
    cdef Rewriter walker
    cdef Header h
    cdef Py_ssize_t pos, end, vpos, vend
    cdef bint explicit, little
    cdef const uint8_t[::1] view
    cdef Meta meta = _read_meta(data, path)
    out = {name: None for name in _PEEK_TAGS.values()}
    out["transfer_syntax"] = meta.transfer_syntax
    walker = Rewriter.__new__(Rewriter)
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
    while pos < end:
        if pos + 4 <= end and rdtag(walker.buf + pos, little) > 0x00280301:
            break  # before reading the header: a header-only buffer may end inside the next value
        walker._header(pos, end, explicit, little, &h)
        if (h.tag >> 16) == 0xFFFE:
            walker._fail(pos, "unexpected item tag in a data set")
        vpos = pos + h.hdr
        vend = walker._skip_value(vpos, end, &h, 0)
        name = _PEEK_TAGS.get(h.tag) if _peek_wanted(h.tag) else None
        if name is not None and not h.seq:
            raw = bytes(view[vpos:vend])
            if h.tag == 0x00280010 or h.tag == 0x00280011:
                out[name] = rd16(&view[vpos], little) if vend - vpos >= 2 else None
            else:
                out[name] = raw.strip(b" \x00").decode("latin-1")
        pos = vend
    if not out["sop_class_uid"]:
        out["sop_class_uid"] = meta.sop_class_uid or None
    if not out["sop_instance_uid"]:
        out["sop_instance_uid"] = meta.sop_instance_uid or None
    return out
