# Included by _core.pyx. A file end to end for Rewriter.rewrite_file, its system calls made here: read whole,
# or read around the Pixel Data value, or mapped; written under a temporary name beside the output (one
# writev, or the kernel copying the pixel range from the input), then renamed; or, ``direct``, written under
# its final name (the run's shard is then the atomic unit: a shard cut short is redone whole).

HEAD_BYTES = 32768  # what a large file's head is read as: the elements before its Pixel Data value


cdef bytes _temporary(bytes bdst, bint direct):
    """The name an output is written under: ``.NAME.veil-tmp`` beside it, or (``direct``) the output itself,
    the same object, so the same pointer: no rename."""
    if direct:
        return bdst
    cdef Py_ssize_t slash = bdst.rfind(b"/")
    return bdst[:slash + 1] + b"." + bdst[slash + 1:] + b".veil-tmp"


cdef int _open_input(str src, Py_ssize_t* size) except -1:
    """An input opened for reading, its size in ``size``: OSError when it cannot be opened, MalformedDicom when
    it is not a regular file or is empty (closed again then)."""
    cdef bytes bsrc = src.encode("utf-8", "surrogateescape")
    cdef const char* csrc = bsrc
    cdef int fd
    cdef struct_stat st
    with nogil:
        fd = c_open(csrc, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        _raise_errno(errno, src)
    try:
        if fstat(fd, &st) != 0:
            _raise_errno(errno, src)
        if not S_ISREG(st.st_mode):
            raise MalformedDicom(src, 0, "not a regular file")
        if st.st_size == 0:
            raise MalformedDicom(src, 0, "empty file")
    except BaseException:
        close(fd)
        raise
    size[0] = st.st_size
    return fd


cdef bytes _read_whole(int fd, Py_ssize_t size, str src):
    """The ``size`` bytes of an open input (fewer if it shrank while it was read: parse what is there, and a
    truncated file fails)."""
    cdef bytes data = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t got = 0, r
    while got < size:
        with nogil:
            r = read(fd, p + got, size - got)
        if r < 0:
            if errno == EINTR:
                continue
            _raise_errno(errno, src)
        if r == 0:
            break
        got += r
    return data if got == size else data[:got]


cdef tuple _rewrite_file(Rewriter rw, str src, str dst, Py_ssize_t limit, shift_days, bint direct):
    """The body of Rewriter.rewrite_file (documented there): ``(result, input_bytes, output_bytes)``."""
    cdef bytes bdst = dst.encode("utf-8", "surrogateescape")
    cdef bytes btmp = _temporary(bdst, direct)
    tmp = btmp.decode("utf-8", "surrogateescape")
    cdef Py_ssize_t size
    cdef void* mapped = MAP_FAILED
    cdef bytes data
    cdef int fd = _open_input(src, &size)
    try:
        if size > limit:
            done = _rewrite_around_pixels(rw, fd, size, src, shift_days)
            if done is not None:
                return done[0], size, _write_copy_and_rename(<RewriteResult>done[0], fd, btmp, bdst, tmp)
            result = None
            with nogil:
                mapped = mmap(NULL, <size_t>size, PROT_READ, MAP_SHARED, fd, 0)
            if mapped == MAP_FAILED:
                _raise_errno(errno, src)
            try:
                result = rw.rewrite(<uint8_t[:size]><uint8_t*>mapped, shift_days, src)
                written = _write_copy_and_rename(result, fd, btmp, bdst, tmp)
            finally:
                if result is not None:
                    (<RewriteResult>result).pixels = None  # a view of the mapping, about to go
                munmap(mapped, <size_t>size)
            return result, size, written
        data = _read_whole(fd, size, src)
    finally:
        close(fd)
    result = rw.rewrite(data, shift_days, src)
    return result, len(data), _write_and_rename(result, btmp, bdst, tmp)


cdef _rewrite_around_pixels(Rewriter rw, int fd, Py_ssize_t size, str src, shift_days):
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
    start, length = rw._locate_pixels(head, size, src)
    if length <= 0:
        return None
    tail_len = size - (start + length)
    joined = PyBytes_FromStringAndSize(NULL, start + tail_len)
    p = PyBytes_AS_STRING(joined)
    memcpy(p, PyBytes_AS_STRING(head), start)
    if tail_len and _pread_fully(fd, p + start, tail_len, start + length) != tail_len:
        return None
    rw.hole_at = start
    rw.hole_len = length
    try:
        return (rw.rewrite(joined, shift_days, src),)
    except (_NeedWholeFile, MalformedDicom):
        return None
    finally:
        rw.hole_at = -1
        rw.hole_len = 0


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
    removes it. A direct write (``tmp`` is ``dst``) is not renamed, and removed on an error. Returns the first
    error."""
    if close(fd) != 0 and err == 0:
        err = errno
    if err == 0 and tmp != dst and rename(tmp, dst) != 0:
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


cdef enum:
    PHASE_FILES_C = 64  # small files a batch reads, then rewrites, then writes together (warm caches in each phase)


cdef object _read_small(str src, Py_ssize_t limit):
    """A whole input of ``limit`` bytes or fewer as bytes, or its size (an int) when it is larger. Raises
    OSError or MalformedDicom as :func:`_rewrite_file` does."""
    cdef Py_ssize_t size
    cdef int fd = _open_input(src, &size)
    try:
        return size if size > limit else _read_whole(fd, size, src)
    finally:
        close(fd)


cdef int _refuse(list failures, Py_ssize_t index, exc) except -1:
    """Records a file the batch refuses; a full disk is raised instead (it stops the run)."""
    if isinstance(exc, OSError) and (exc.errno == ENOSPC or exc.errno == EDQUOT):
        raise exc
    failures.append((index, exc))
    return 0


cdef tuple _rewrite_files(Rewriter rw, list srcs, list dsts, Py_ssize_t limit, bint direct):
    """The body of Rewriter.rewrite_files (documented there). Small inputs go in phases of PHASE_FILES: all
    read, then all rewritten, then all written; a larger one is done whole by :func:`_rewrite_file` in its
    turn."""
    cdef Py_ssize_t n = len(srcs), i, j, k, stop
    if len(dsts) != n:
        raise ValueError(f"{n} inputs but {len(dsts)} outputs")
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
                phase[i - k] = _read_small(<str>srcs[i], limit)
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
                btmp = _temporary(bdst, direct)
                try:
                    out_bytes[i] = _write_and_rename(result, btmp, bdst,
                                                     btmp.decode("utf-8", "surrogateescape"))
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
