/* veil: the core's file system helpers.
 *
 * veil_copy_range copies a byte range of one open file to the end of another in the kernel where it can:
 * copy_file_range (same file system: reflink or in-kernel copy), then sendfile (Linux, any two files: one
 * kernel copy through the page cache), then pread/write through a buffer (anywhere). Returns 0, or an errno
 * (EIO when the input ends before the range does: it shrank while it was being copied).
 *
 * veil_readdir is readdir with its error; veil_make_parents makes the folders above a file (mkdir -p). */
#ifndef VEIL_FILEIO_H
#define VEIL_FILEIO_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif
#ifndef O_PATH
#define O_PATH O_RDONLY  /* a folder held for openat: opened for reading where there is no O_PATH */
#endif

static int veil_copy_range(int in_fd, int out_fd, int64_t offset, int64_t count)
{
    off_t in_off = (off_t)offset;
    ssize_t r;
#ifdef __linux__
    /* copy_file_range refuses pairs of file systems it cannot join (EXDEV and its kin): fall through. */
    while (count > 0) {
        r = copy_file_range(in_fd, &in_off, out_fd, NULL, (size_t)count, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP || errno == EBADF)
                break;
            return errno;
        }
        if (r == 0) break;  /* nothing more from the input, or a file system that copies nothing: go on below */
        count -= r;
    }
    while (count > 0) {
        r = sendfile(out_fd, in_fd, &in_off, (size_t)count);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EINVAL || errno == ENOSYS) break;
            return errno;
        }
        if (r == 0) return EIO;
        count -= r;
    }
#endif
    if (count > 0) {
        size_t size = 1 << 20;
        char *buf = malloc(size);
        if (buf == NULL) return ENOMEM;
        while (count > 0) {
            r = pread(in_fd, buf, count < (int64_t)size ? (size_t)count : size, in_off);
            if (r < 0) {
                if (errno == EINTR) continue;
                free(buf);
                return errno;
            }
            if (r == 0) { free(buf); return EIO; }
            in_off += r;
            count -= r;
            char *p = buf;
            while (r > 0) {
                ssize_t w = write(out_fd, p, (size_t)r);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    free(buf);
                    return errno;
                }
                p += w;
                r -= w;
            }
        }
        free(buf);
    }
    return 0;
}

/* readdir with its error: NULL and *err 0 at the end of the directory, NULL and *err set on a failure. */
static struct dirent *veil_readdir(DIR *d, int *err)
{
    errno = 0;
    struct dirent *e = readdir(d);
    *err = errno;
    return e;
}

/* Makes every missing folder above the file ``path`` (mode 0777 less the umask, as mkdir -p): 0 or an errno. */
static int veil_make_parents(const char *path)
{
    size_t n = strlen(path);
    char *buf = malloc(n + 1);
    if (buf == NULL) return ENOMEM;
    memcpy(buf, path, n + 1);
    char *last = strrchr(buf, '/');
    int err = 0;
    if (last != NULL && last != buf) {
        *last = '\0';
        for (char *p = buf + 1; ; p++) {
            if (*p == '/' || *p == '\0') {
                char c = *p;
                *p = '\0';
                if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                    err = errno;
                    break;
                }
                *p = c;
                if (c == '\0') break;
            }
        }
    }
    free(buf);
    return err;
}

#endif
