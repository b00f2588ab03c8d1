# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""veil's native core: a DICOM tag-stream rewriter that applies a Plan to the bytes of a file.

It walks the File Meta group and the data set once (implicit VR LE, explicit VR LE/BE, deflated, encapsulated
pixel data), every sequence and item of defined or undefined length to a depth limit, ``UN`` elements holding
implicit VR sequences and private creator blocks, and writes a Part 10 output: File Meta rebuilt, every length
right, every byte the Plan does not change copied as it was. It never builds a pydicom Dataset. The top-level
Pixel Data value is not copied: it is handed back as a slice of the input.

The semantics of each action are those of ``veil.core.plan`` (its docstring is the specification); the tests compare
this module against an independent pydicom implementation.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t
from libc.string cimport memcpy, memcmp, memset
from libc.stdlib cimport malloc, free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.errno cimport errno, EINTR, EIO, ENOENT, ENOSPC, EDQUOT
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME
from posix.fcntl cimport (open as c_open, openat, O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC, O_DIRECTORY,
                          AT_FDCWD, AT_SYMLINK_NOFOLLOW)
cdef extern from "<fcntl.h>":
    const int O_NOFOLLOW
cdef extern from "fileio.h" nogil:
    const int O_PATH  # fileio.h: O_RDONLY where the system has no O_PATH
    int renameat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath)
    int unlinkat(int dirfd, const char* path, int flags)
from posix.stat cimport struct_stat, fstat, fstatat, S_ISREG, S_ISDIR, S_ISLNK
from posix.uio cimport iovec, readv, writev
from posix.unistd cimport read, write, pread, close
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

import os
import zlib

from veil._version import __version__ as _VEIL_VERSION
from veil.errors import MalformedDicom, PlanError, VeilError
from veil.core.plan import Action, DUMMY_VALUES, STANDARD_UID_PREFIX, encode_inserted


# One file per concern; their module-level statements run at import in this order. The cdef classes' state and
# C methods are declared in _core.pxd; the low-level readers, VR codes and the output buffer in tagstream.pxd.
include "dates.pxi"        # date shifting and age clamping in C
include "elements.pxi"     # VR helpers; TagReader: element headers, skipping values, bounds checks
include "meta.pxi"         # the File Meta: read (Meta, read_meta), written anew (build_meta); inflate
include "compile.pxi"      # a Plan compiled into the C tables a Rewriter reads
include "rewriter.pxi"     # Rewriter: per element, the Plan's action applied and the output written
include "result.pxi"       # RewriteResult, and how a walk's output becomes one (File Meta, deflate, pixels)
include "rewriter_io.pxi"  # Rewriter.rewrite_file: read, map or read around the pixels, write, rename
include "batch.pxi"        # Rewriter.rewrite_files: files in phases, opened relative to their folders
include "scan.pxi"         # scan_directory, the listing of veil run
include "peek.pxi"         # peek: the values later stages need, from the top level
include "identity.pxi"     # identity_values: the identity elements at every depth
