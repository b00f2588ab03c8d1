# Included by _core.pyx. A file end to end for Rewriter.rewrite_file, its system calls made here: read whole,
# or read around the Pixel Data value, or mapped; written under a temporary name beside the output (one
# writev, or the kernel copying the pixel range from the input), then renamed; or, ``direct``, written under
# its final name (the run's shard is then the atomic unit: a shard cut short is redone whole).
# The batch of Rewriter.rewrite_files (batch.pxi) writes through the same helpers, relative to a folder.

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
    with nogil:
        fd = c_open(csrc, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        _raise_errno(errno, src)
    try:
        size[0] = _input_size(fd, src)
    except BaseException:
        close(fd)
        raise
    return fd


cdef Py_ssize_t _input_size(int fd, str src) except -1:
    """The size of an open input (``fstat``): MalformedDicom when it is not a regular file or is empty."""
    cdef struct_stat st
    if fstat(fd, &st) != 0:
        _raise_errno(errno, src)
    if not S_ISREG(st.st_mode):
        raise MalformedDicom(src, 0, "not a regular file")
    if st.st_size == 0:
        raise MalformedDicom(src, 0, "empty file")
    return st.st_size


cdef bytes _read_whole(int fd, Py_ssize_t size, str src):
    """The ``size`` bytes of an open input from its start (fewer if it shrank while it was read: parse what is
    there, and a truncated file fails)."""
    cdef bytes data = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t got
    with nogil:
        got = _pread_fully(fd, p, size, 0)
    if got < 0:
        _raise_errno(errno, src)
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
    cdef int err = 0
    cdef Py_ssize_t done = _write_at(result, AT_FDCWD, btmp, bdst, &err)
    if err != 0:
        _raise_errno(err, tmp)
    return done


cdef Py_ssize_t _write_at(RewriteResult result, int folder, const char* ctmp, const char* cdst,
                          int* error) except -1:
    """:func:`_write_and_rename` relative to the open ``folder`` (``AT_FDCWD``: the paths as they are): the
    bytes written, or an errno in ``error`` (the temporary file removed)."""
    cdef Py_buffer views[3]
    cdef iovec iov[3]
    cdef int n = 0, i, fd, err = 0
    cdef Py_ssize_t total = 0, done = 0, r, skip
    parts = result.parts()
    for obj in parts:
        PyObject_GetBuffer(obj, &views[n], PyBUF_SIMPLE)
        iov[n].iov_base = views[n].buf
        iov[n].iov_len = views[n].len
        total += views[n].len
        n += 1
    try:
        with nogil:
            fd = _open_temporary(folder, ctmp, &err)
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
                err = _finish_temporary(fd, folder, ctmp, cdst, err)
    finally:
        for i in range(n):
            PyBuffer_Release(&views[i])
    error[0] = err
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
        fd = _open_temporary(AT_FDCWD, ctmp, &err)
        if fd >= 0:
            err = _write_fully(fd, head, head_len)
            if err == 0 and count > 0:
                err = veil_copy_range(src_fd, fd, start, count)
            if err == 0 and tail_len:
                err = _write_fully(fd, tail, tail_len)
            err = _finish_temporary(fd, AT_FDCWD, ctmp, cdst, err)
    if err != 0:
        _raise_errno(err, tmp)
    return head_len + count + tail_len


cdef int _finish_temporary(int fd, int folder, const char* tmp, const char* dst, int err) noexcept nogil:
    """Closes the temporary output; renames it to ``dst`` when everything before went well (``err`` 0), else
    removes it. A direct write (``tmp`` is ``dst``) is not renamed, and removed on an error. Returns the first
    error. Both names are relative to ``folder`` (``AT_FDCWD``: paths)."""
    if close(fd) != 0 and err == 0:
        err = errno
    if err == 0 and tmp != dst and renameat(folder, tmp, folder, dst) != 0:
        err = errno
    if err != 0:
        unlinkat(folder, tmp, 0)
    return err


cdef int _open_temporary(int folder, const char* path, int* err) noexcept nogil:
    """The temporary output, created or truncated (never through a symbolic link); -1 with ``err`` set on
    failure. A path (``folder`` is ``AT_FDCWD``) has the folders above it made when missing; a name in an open
    folder does not (ENOENT: the folder was removed since it was opened)."""
    cdef int fd = openat(folder, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
    if fd < 0 and errno == ENOENT and folder == AT_FDCWD:
        err[0] = veil_make_parents(path)
        if err[0] != 0:
            return -1
        fd = openat(folder, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
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
