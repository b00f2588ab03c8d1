# Included by _core.pyx, after rewriter_io.pxi. The batch of Rewriter.rewrite_files: small files read, rewritten
# and written in phases; each file opened relative to its folder, which is held open while the batch is in it
# (files come sorted, so a folder's files come together); a file whose listed size is given read without an
# fstat.

cdef enum:
    PHASE_FILES_C = 64  # small files a batch reads, then rewrites, then writes together (warm caches in each phase)


cdef class _Folder:
    """One folder held open (``O_PATH``) for the files of a batch in it: each is opened (``openat``), and an
    output renamed (``renameat``), by its name in the folder, so the kernel walks the folder's path once, not
    once per file."""

    cdef bytes path  # the folder: a file path's bytes before its last "/"
    cdef int fd
    cdef bint make  # outputs: a missing folder is made (and those above it)

    def __cinit__(self, bint make):
        self.path = None
        self.fd = -1
        self.make = make

    def __dealloc__(self):
        self.forget()

    cdef int at(self, bytes file, Py_ssize_t slash) except -2:
        """The open folder of the path ``file``, whose last "/" is at ``slash``: the one held, or opened (made
        first, for outputs, when missing); -1 when it cannot be (the caller then uses the whole path, which
        gives the file's own error)."""
        cdef const char* cfile = PyBytes_AS_STRING(file)
        if self.fd >= 0 and len(self.path) == slash and memcmp(PyBytes_AS_STRING(self.path), cfile, slash) == 0:
            return self.fd
        self.forget()
        cdef bytes folder = file[:slash]
        cdef const char* cfolder = folder
        cdef int fd
        with nogil:
            fd = c_open(cfolder, O_PATH | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 and errno == ENOENT and self.make and veil_make_parents(cfile) == 0:
                fd = c_open(cfolder, O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0:
            return -1
        self.path = folder
        self.fd = fd
        return fd

    cdef void forget(self) noexcept:
        if self.fd >= 0:
            close(self.fd)
        self.fd = -1
        self.path = None


cdef object _read_small(str src, Py_ssize_t limit, Py_ssize_t listed, _Folder folder):
    """A whole input of ``limit`` bytes or fewer as bytes, or its size (an int) when it is larger. Raises
    OSError or MalformedDicom as :func:`_rewrite_file` does.

    ``listed`` is the size the listing saw (0: not known). A small listed file is opened relative to its folder
    and read with one ``readv`` of ``listed`` bytes and one more, with no ``fstat`` (:func:`_read_listed`)."""
    cdef Py_ssize_t size
    cdef bytes bsrc
    cdef Py_ssize_t slash = -1
    cdef int fd, at = -1
    if 0 < listed <= limit:
        bsrc = src.encode("utf-8", "surrogateescape")
        slash = bsrc.rfind(b"/")
        if slash > 0:
            at = folder.at(bsrc, slash)
    if at < 0:
        fd = _open_input(src, &size)
        try:
            return size if size > limit else _read_whole(fd, size, src)
        finally:
            close(fd)
    cdef const char* name = PyBytes_AS_STRING(bsrc) + slash + 1
    with nogil:
        fd = openat(at, name, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        _raise_errno(errno, src)
    try:
        return _read_listed(fd, listed, limit, src)
    finally:
        close(fd)


cdef object _read_listed(int fd, Py_ssize_t listed, Py_ssize_t limit, str src):
    """The open input of :func:`_read_small` whose listing said ``listed`` bytes: read into a bytes object of
    that size, and one byte past it, in one ``readv`` (which returns short at the end of the file). What comes
    back is the file (fewer bytes: it shrank, and what is there is parsed, as ever). The byte past it means the
    file grew, or is not a regular file: it is then sized and read as an unlisted file is."""
    cdef bytes data = PyBytes_FromStringAndSize(NULL, listed)
    cdef char extra
    cdef iovec iov[2]
    cdef Py_ssize_t got = 0, r, size
    while got < listed:
        iov[0].iov_base = PyBytes_AS_STRING(data) + got
        iov[0].iov_len = listed - got
        iov[1].iov_base = &extra
        iov[1].iov_len = 1
        with nogil:
            r = readv(fd, iov, 2)
        if r < 0:
            if errno == EINTR:
                continue
            _raise_errno(errno, src)
        if r == 0:
            break
        got += r
    if got > listed:  # it grew since the listing, or is not a plain file: sized as an unlisted file is
        size = _input_size(fd, src)
        return size if size > limit else _read_whole(fd, size, src)
    if got == 0:
        raise MalformedDicom(src, 0, "empty file")
    return data if got == listed else data[:got]  # it shrank: what is there is parsed (a cut file fails)


cdef int _refuse(list failures, Py_ssize_t index, exc) except -1:
    """Records a file the batch refuses; a full disk is raised instead (it stops the run)."""
    if isinstance(exc, OSError) and (exc.errno == ENOSPC or exc.errno == EDQUOT):
        raise exc
    failures.append((index, exc))
    return 0


cdef tuple _rewrite_files(Rewriter rw, list srcs, list dsts, Py_ssize_t limit, bint direct, list sizes):
    """The body of Rewriter.rewrite_files (documented there). Small inputs go in phases of PHASE_FILES: all
    read, then all rewritten, then all written; a larger one is done whole by :func:`_rewrite_file` in its
    turn. Inputs and outputs are opened relative to their folders (:class:`_Folder`)."""
    cdef Py_ssize_t n = len(srcs), i, j, k, stop
    if len(dsts) != n:
        raise ValueError(f"{n} inputs but {len(dsts)} outputs")
    if sizes is not None and len(sizes) != n:
        raise ValueError(f"{n} inputs but {len(sizes)} sizes")
    cdef _Folder inputs = _Folder(False), outputs = _Folder(True)
    try:
        return _batch(rw, srcs, dsts, limit, direct, sizes, inputs, outputs)
    finally:
        inputs.forget()
        outputs.forget()


cdef tuple _batch(Rewriter rw, list srcs, list dsts, Py_ssize_t limit, bint direct, list sizes, _Folder inputs,
                  _Folder outputs):
    cdef Py_ssize_t n = len(srcs), i, j, k, stop
    cdef list in_bytes = [0] * n, out_bytes = [0] * n, micros = [0] * n, times = [0] * n
    cdef list sop_class = [""] * n, sop_instance = [""] * n, study = [""] * n, series = [""] * n
    cdef list modality = [""] * n, failures = []
    cdef bytearray counts = bytearray(n * N_ACTIONS * sizeof(int32_t))
    cdef int32_t* row
    cdef int32_t* counts_at = <int32_t*><char*>counts
    cdef RewriteResult result
    cdef timespec t0, t1, wall
    cdef int64_t spent[PHASE_FILES_C]
    cdef bint pending[PHASE_FILES_C]  # rewritten in memory, not written yet
    cdef list phase = [None] * PHASE_FILES_C
    cdef bytes bdst, btmp
    for k in range(0, n, PHASE_FILES_C):
        stop = min(n, k + PHASE_FILES_C)
        # Read: each input whole (or its size, when it is large: done whole below).
        for i in range(k, stop):
            clock_gettime(CLOCK_MONOTONIC, &t0)
            try:
                phase[i - k] = _read_small(<str>srcs[i], limit, 0 if sizes is None else <Py_ssize_t>sizes[i],
                                           inputs)
            except (OSError, VeilError) as exc:
                phase[i - k] = None
                _refuse(failures, i, exc)
            clock_gettime(CLOCK_MONOTONIC, &t1)
            spent[i - k] = (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        # Rewrite: in memory, caches warm from one file to the next.
        for i in range(k, stop):
            data = phase[i - k]
            pending[i - k] = False
            if data is None:
                continue
            clock_gettime(CLOCK_MONOTONIC, &t0)
            try:
                if type(data) is bytes:
                    in_bytes[i] = len(<bytes>data)
                    phase[i - k] = rw.rewrite(data, None, <str>srcs[i])
                    pending[i - k] = True
                else:
                    done_file = _rewrite_file(rw, <str>srcs[i], <str>dsts[i], limit, None, direct)
                    phase[i - k] = (<tuple>done_file)[0]
                    in_bytes[i] = (<tuple>done_file)[1]
                    out_bytes[i] = (<tuple>done_file)[2]
            except (OSError, VeilError) as exc:
                phase[i - k] = None
                _refuse(failures, i, exc)
            clock_gettime(CLOCK_MONOTONIC, &t1)
            spent[i - k] += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        # Write: one writev each (under a temporary name then renamed, or direct).
        for i in range(k, stop):
            done_file = phase[i - k]
            if done_file is None:
                continue
            result = <RewriteResult>done_file
            if pending[i - k]:
                clock_gettime(CLOCK_MONOTONIC, &t0)
                bdst = (<str>dsts[i]).encode("utf-8", "surrogateescape")
                try:
                    out_bytes[i] = _write_in_folder(result, bdst, direct, outputs)
                except OSError as exc:
                    phase[i - k] = None
                    _refuse(failures, i, exc)
                    continue
                finally:
                    result.pixels = None
                clock_gettime(CLOCK_MONOTONIC, &t1)
                spent[i - k] += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
            clock_gettime(CLOCK_REALTIME, &wall)
            micros[i] = spent[i - k] // 1000
            times[i] = wall.tv_sec * 1000000 + wall.tv_nsec // 1000
            sop_class[i] = result.sop_class_uid
            sop_instance[i] = result.sop_instance_uid
            study[i] = result.study_instance_uid
            series[i] = result.series_instance_uid
            modality[i] = result.modality
            row = counts_at + i * N_ACTIONS
            for j in range(N_ACTIONS):
                row[j] = <int32_t>result._counts[j]
            phase[i - k] = None
    failures.sort()  # in file order (the phases found them out of it); each index is there once
    return (in_bytes, out_bytes, sop_class, sop_instance, study, series, modality, counts, micros, times,
            failures)


cdef Py_ssize_t _write_in_folder(RewriteResult result, bytes bdst, bint direct, _Folder outputs) except -1:
    """:func:`_write_and_rename` by the output's name in its folder, held open by ``outputs`` (made when
    missing); by its path when the folder cannot be opened, or was removed since (that path makes it again)."""
    cdef Py_ssize_t slash = bdst.rfind(b"/"), written
    cdef int at = outputs.at(bdst, slash) if slash > 0 else -1
    cdef int err = 0
    cdef bytes name, btmp
    if at >= 0:
        name = bdst[slash + 1:]
        btmp = _temporary(name, direct)  # (the same name beside it, a name with no "/")
        written = _write_at(result, at, btmp, name, &err)
        if err == 0:
            return written
        if err != ENOENT:
            _raise_errno(err, _temporary(bdst, direct).decode("utf-8", "surrogateescape"))
        outputs.forget()
    btmp = _temporary(bdst, direct)
    return _write_and_rename(result, btmp, bdst, btmp.decode("utf-8", "surrogateescape"))
