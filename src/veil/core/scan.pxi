# Included by _core.pyx. The listing of veil run: one directory's entries from one readdir pass, with an lstat
# only where the kind or the size is needed.

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

