# Included by _core.pyx. The Rewriter: a Plan compiled once into C tables (compile.pxi), then per file a walk
# that applies it to every element (PS3.5 7.5: sequences and items to any depth) and writes the output data
# set. Its state is declared in _core.pxd; its result is built in result.pxi; its file paths are in
# rewriter_io.pxi.

ACTION_NAMES = tuple(a.name for a in Action)


class _NeedWholeFile(Exception):
    """A file rewritten from its head and tail needs its whole bytes after all (the core then maps it)."""


assert len(ACTION_NAMES) == N_ACTIONS and all(int(a) == i for i, a in enumerate(Action))

cdef const uint8_t* STD_PREFIX = b"1.2.840.10008."
cdef Py_ssize_t STD_PREFIX_LEN = 14


cdef class Rewriter(TagReader):
    """Applies one compiled Plan to whole files; reuse one per worker (not thread-safe: it keeps buffers).

    ``uid_fn(uid: bytes) -> bytes`` remaps one UID and ``id_fn(value: bytes) -> bytes`` makes one pseudonym;
    both are keyed functions (``veil.keys``) and are cached here per original value.
    """

    def __cinit__(self):
        self.pub_tags = NULL
        self.pub_actions = NULL
        self.pub_args = NULL
        self.pub_slots = NULL
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
        free(self.pub_slots)
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
        self.uid_cache_bytes = self.id_cache_bytes = self.shift_cache_bytes = 0
        self.cache_limit = CACHE_BYTES
        self.values = []
        self.age_cap = int(plan.age_cap)
        if not 0 < self.age_cap < 1000:
            raise PlanError(f"age_cap must be between 1 and 999 years, not {self.age_cap}")
        self.default_public = int(Action(plan.default_public))
        self.default_private = int(Action(plan.default_private))
        self.dummies = {}
        for name, value in DUMMY_VALUES.items():
            self.dummies[vr_code(name)] = value.encode("ascii") if isinstance(value, str) else bytes(value)
        _compile_tables(self, plan)
        _compile_inserts(self, plan)

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
        cdef int i, slot
        cdef int32_t found
        cdef uint32_t at = tag_slot(tag, self.pub_shift)
        while True:
            found = self.pub_slots[at]
            if found < 0:
                break
            if self.pub_tags[found] == tag:
                arg[0] = self.pub_args[found]
                return self.pub_actions[found]
            at = (at + 1) & self.pub_mask
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
            if h.length == UNDEFINED:
                # Cast: an inherited cdef inline method is called directly only on its own class's type (on a
                # subclass, Cython calls it through the vtable).
                vend = (<TagReader>self)._skip_value(vpos, end, &h, depth)
            else:
                vend = vpos + h.length
            if vpos == self.hole_at:
                vend = vpos  # the Pixel Data value is not in the buffer: what follows it is
            if depth == 0 and self._emit_inserts(tag, explicit, little):
                pos = vend  # replaced by an inserted element
                continue
            arg = -1
            # Which action (veil.core.plan: lookup order)
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
                    self._cache_put(CACHE_UID if uids else CACHE_ID, key, new, len(key) + len(new))
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
        return _make_result(self, source, data, meta, deflated)

    def rewrite_file(self, str src not None, str dst not None, Py_ssize_t limit, shift_days=None,
                     bint direct=False):
        """One file end to end, its system calls made here; the output appears whole or not at all.

        A file of ``limit`` bytes or fewer is read whole, rewritten and written with one ``writev``. A larger
        one is mapped: its header is rewritten from the mapping, the header written, the Pixel Data value copied
        from the input by the kernel (``copy_file_range``, else ``sendfile``, else a buffer), then the trailer.
        The output is written to ``.NAME.veil-tmp`` beside ``dst`` (a fixed name: a retried or resumed write
        replaces it, never leaves another), the folders above it made when missing, then renamed to ``dst``;
        ``direct`` writes ``dst`` itself (created or truncated, removed on a failed write), for runs whose shard
        is the atomic unit.
        Returns ``(result, input_bytes, output_bytes)``; the result of a mapped file has no ``pixels`` (the
        mapping is gone), its ``pixel_range`` says where they were. An unreadable input or a failed write raises
        OSError (errno and path set; the temporary file removed); a bad file raises MalformedDicom.
        """
        return _rewrite_file(self, src, dst, limit, shift_days, direct)

    def rewrite_files(self, list srcs not None, list dsts not None, Py_ssize_t limit, bint direct=False,
                      list sizes=None):
        """Many files end to end in one call, each as :meth:`rewrite_file` does it, their outcomes as columns
        (the per-shard audit's): ``(input_bytes, output_bytes, sop_class_uid, sop_instance_uid,
        study_instance_uid, series_instance_uid, modality, counts, microseconds, times, failures)``.

        Each column has one value per file; ``counts`` is a bytearray of ``len(srcs) * N_ACTIONS`` native
        int32 (a file's elements per action, in ``ACTION_NAMES`` order), ``times`` when each file was done
        (microseconds since the epoch, UTC). A file the core refuses (OSError, or any VeilError: a malformed
        file, a pseudonym not numbered) has zeros and empty strings in the columns and ``(index, exception)``
        in ``failures``; no output of it is left. A full disk (ENOSPC, EDQUOT) is raised at once (the outputs
        written before it stay; the run stops).

        ``sizes``, the inputs' sizes as listed, saves an ``fstat`` per small file: it is read with one ``readv``
        of its listed size and a byte more (a file that grew since is sized and read again; one that shrank is
        parsed as it is, as :meth:`rewrite_file` does). Inputs and outputs are opened relative to their folders,
        each folder opened once for the consecutive files in it (outputs' folders made when missing)."""
        return _rewrite_files(self, srcs, dsts, limit, direct, sizes)

    cdef int _cache_put(self, int which, object key, object value, Py_ssize_t size) except -1:
        """Keeps ``key -> value`` in the UID, pseudonym or date-shift cache (``which``), emptied first when it
        would pass ``cache_limit`` bytes (``size`` plus an entry's overhead)."""
        cdef dict cache = self.uid_cache if which == CACHE_UID else self.id_cache if which == CACHE_ID \
            else self.shift_cache
        cdef Py_ssize_t cost = size + CACHE_ENTRY_BYTES
        cdef Py_ssize_t used = self.uid_cache_bytes if which == CACHE_UID else self.id_cache_bytes \
            if which == CACHE_ID else self.shift_cache_bytes
        if used + cost > self.cache_limit:
            cache.clear()
            used = 0
        cache[key] = value
        if which == CACHE_UID:
            self.uid_cache_bytes = used + cost
        elif which == CACHE_ID:
            self.id_cache_bytes = used + cost
        else:
            self.shift_cache_bytes = used + cost
        return 0

    @property
    def cache_bytes(self):
        """What the UID, pseudonym and date-shift caches hold, in bytes as they are counted against
        ``cache_limit`` (each cache is bounded by it)."""
        return {"uid": self.uid_cache_bytes, "pseudonym": self.id_cache_bytes, "shift": self.shift_cache_bytes,
                "entries": len(self.uid_cache) + len(self.id_cache) + len(self.shift_cache)}

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
                self._cache_put(CACHE_SHIFT, patient_id, days,
                                32 + (len(patient_id) if isinstance(patient_id, bytes) else 0))
            self.shift_days = days
        self._dataset(pos, self.n, False, explicit, little, 0)

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
