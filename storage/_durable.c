/* Durable small-file system calls, each sequence in one release of the GIL.
 *
 * Why: every os.* call releases the GIL and takes it back. With the event loop and the
 * I/O or drive threads all wanting it, each release is a hand-over (a futex wake and a
 * context switch each way), and a small PUT made ~20 of them per file it wrote: an
 * erasure node's 4 KiB PUT spent 6.5 ms of CPU, most of it in those hand-overs (README
 * "Durable writes in C"). These functions make the same calls, in the same order, with
 * the GIL released once. storage/durable.py uses them, and its os.* versions where this
 * module is not built (no C compiler or Python headers at install).
 *
 * Errors raise OSError (FileNotFoundError, ...) with errno and the path concerned, as
 * the os module does; a file this code created is removed again on failure.
 *
 * read_cached is the other way round: a read for the event loop, which must never wait
 * for a disk, so it keeps the GIL and gives up (None) wherever the kernel would wait.
 *
 * buffer is a bytearray that is not zero-filled, for a read that overwrites it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#endif
#endif
#if defined(RESOLVE_CACHED) && defined(SYS_openat2) && defined(RWF_NOWAIT)
#define HAVE_READ_CACHED 1
#endif

/* Which path an error concerns: the first, the second, or the first's folder. */
enum where { AT_NONE, AT_FIRST, AT_SECOND, AT_FOLDER };

static int write_all(int fd, const char *buf, Py_ssize_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, (size_t)len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

/* (GIL released.) A new file (it must not exist) holding `len` bytes of `buf`, fsynced if
 * `sync`, its stat in `st`; removed again if a step after its creation fails.
 * Returns 0 or the errno. */
static int create_file(const char *path, const char *buf, Py_ssize_t len, int mode, int sync,
                       struct stat *st) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return errno;
    int err = 0;
    if (write_all(fd, buf, len) < 0 || (sync && fsync(fd) < 0) || fstat(fd, st) < 0) err = errno;
    if (close(fd) < 0 && !err) err = errno;
    if (err) unlink(path);
    return err;
}

/* (GIL released.) open, fsync, close the file or (`folder`) folder at `path`.
 * Returns 0 or the errno. */
static int sync_path(const char *path, int folder) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | (folder ? O_DIRECTORY : 0));
    if (fd < 0) return errno;
    int err = fsync(fd) < 0 ? errno : 0;
    close(fd);
    return err;
}

/* (GIL released.) sync_path of the folder holding `path`. Returns 0 or the errno. */
static int sync_folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - path);
    char *folder = malloc(len + 2);
    if (folder == NULL) return ENOMEM;
    if (slash == NULL) {
        strcpy(folder, ".");
    } else if (len == 0) {
        strcpy(folder, "/");
    } else {
        memcpy(folder, path, len);
        folder[len] = '\0';
    }
    int err = sync_path(folder, 1);
    free(folder);
    return err;
}

static PyObject *stamp_of(const struct stat *st) {
    return Py_BuildValue(
        "(KKLLL)", (unsigned long long)st->st_ino, (unsigned long long)st->st_dev,
        (long long)st->st_size,
        (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
        (long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec);
}

static PyObject *raise_at(int err, enum where at, PyObject *first, PyObject *second) {
    errno = err;
    if (at == AT_SECOND) return PyErr_SetFromErrnoWithFilenameObjects(PyExc_OSError, first, second);
    if (at == AT_FOLDER) {
        /* The folder's name, as os.path.dirname gives it. */
        PyObject *os_path = PyImport_ImportModule("os.path");
        PyObject *folder = os_path == NULL ? NULL : PyObject_CallMethod(os_path, "dirname", "O", first);
        Py_XDECREF(os_path);
        if (folder == NULL) return NULL;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, folder);
        Py_DECREF(folder);
        return NULL;
    }
    return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, first);
}

/* create(path, data, mode, sync) -> (ino, dev, size, mtime_ns, ctime_ns)
 * A new file (it must not exist) holding `data`, fsynced if `sync`; its stat. */
static PyObject *durable_create(PyObject *self, PyObject *args) {
    PyObject *path_arg, *path_obj = NULL;
    Py_buffer data;
    int mode, sync;
    if (!PyArg_ParseTuple(args, "Oy*ip:create", &path_arg, &data, &mode, &sync)) return NULL;
    if (!PyUnicode_FSConverter(path_arg, &path_obj)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_obj);
    struct stat st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = create_file(path, data.buf, data.len, mode, sync, &st);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *result = err ? raise_at(err, AT_FIRST, path_arg, NULL) : stamp_of(&st);
    Py_DECREF(path_obj);
    return result;
}

/* replace(tmp, target, data, mode, sync_folder) -> (ino, dev, size, mtime_ns, ctime_ns)
 * `data` written to the new file `tmp`, fsynced, renamed over `target` (readers see the
 * old or the new content), and target's folder fsynced if `sync_folder`; the new file's
 * stat (taken before the rename, which changes neither its inode, size nor mtime). */
static PyObject *durable_replace(PyObject *self, PyObject *args) {
    PyObject *tmp_arg, *target_arg, *tmp_obj = NULL, *target_obj = NULL;
    Py_buffer data;
    int mode, sync_folder;
    if (!PyArg_ParseTuple(args, "OOy*ip:replace", &tmp_arg, &target_arg, &data, &mode, &sync_folder))
        return NULL;
    if (!PyUnicode_FSConverter(tmp_arg, &tmp_obj) || !PyUnicode_FSConverter(target_arg, &target_obj)) {
        Py_XDECREF(tmp_obj);
        PyBuffer_Release(&data);
        return NULL;
    }
    const char *tmp = PyBytes_AS_STRING(tmp_obj), *target = PyBytes_AS_STRING(target_obj);
    struct stat st;
    int err = 0;
    enum where at = AT_NONE;
    Py_BEGIN_ALLOW_THREADS
    err = create_file(tmp, data.buf, data.len, mode, 1, &st);
    if (err) {
        at = AT_FIRST;
    } else if (rename(tmp, target) < 0) {
        err = errno;
        at = AT_SECOND;
        unlink(tmp);
    } else if (sync_folder && (err = sync_folder_of(target)) != 0) {
        at = AT_FOLDER;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *result;
    if (!err)
        result = stamp_of(&st);
    else if (at == AT_FOLDER)
        result = raise_at(err, at, target_arg, NULL);
    else
        result = raise_at(err, at, tmp_arg, target_arg);
    Py_DECREF(tmp_obj);
    Py_DECREF(target_obj);
    return result;
}

/* read(path) -> bytes: the whole of a small file (open, fstat, read to its end, close),
 * read into a heap buffer while the GIL is released and copied once into the bytes. */
static PyObject *durable_read(PyObject *self, PyObject *args) {
    PyObject *path_arg, *path_obj = NULL;
    if (!PyArg_ParseTuple(args, "O:read", &path_arg) || !PyUnicode_FSConverter(path_arg, &path_obj))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_obj);
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        err = errno;
    } else {
        /* Its size plus one byte, to see the end in the same read; more if it grew. */
        size_t cap = (size_t)(st.st_size > 0 ? st.st_size : 0) + 1;
        buf = malloc(cap);
        while (buf != NULL) {
            ssize_t n = read(fd, buf + len, cap - len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                err = errno;
                break;
            }
            len += (size_t)n;
            if (len < cap) break; /* a regular file's read is short only at its end */
            {
                char *bigger = realloc(buf, cap * 2 + 65536);
                if (bigger == NULL) {
                    err = ENOMEM;
                    break;
                }
                buf = bigger;
                cap = cap * 2 + 65536;
            }
        }
        if (buf == NULL && !err) err = ENOMEM;
    }
    if (fd >= 0) close(fd);
    Py_END_ALLOW_THREADS
    PyObject *result = err ? raise_at(err, AT_FIRST, path_arg, NULL)
                           : PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    free(buf);
    Py_DECREF(path_obj);
    return result;
}

/* read_cached(path, limit) -> (bytes, stamp) | None: the whole file at `path` and its stat
 * (as `create` gives it), if the kernel has it without waiting for a disk: its path
 * resolved from the dentry cache alone (openat2 RESOLVE_CACHED: an os.open can wait to
 * read a folder) and every byte of it in the page cache (preadv2 RWF_NOWAIT), read
 * straight into the bytes returned. None when it is
 * absent, not a regular file, larger than `limit`, not all cached, or the kernel (Linux
 * before 5.12), the filesystem or the headers at build time lack these calls: the caller
 * then reads on a thread, which also reports why. */
static PyObject *durable_read_cached(PyObject *self, PyObject *args) {
    PyObject *path_arg, *path_obj = NULL;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "On:read_cached", &path_arg, &limit) ||
        !PyUnicode_FSConverter(path_arg, &path_obj))
        return NULL;
#ifdef HAVE_READ_CACHED
    /* Set once the kernel or the filesystem refuses these calls: no use asking again. */
    static int unsupported = 0;
    int fd = -1;
    if (!unsupported) {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_CACHED};
        fd = (int)syscall(SYS_openat2, AT_FDCWD, PyBytes_AS_STRING(path_obj), &how, sizeof how);
        if (fd < 0 && (errno == ENOSYS || errno == EINVAL)) unsupported = 1;
    }
    Py_DECREF(path_obj);
    if (fd < 0) Py_RETURN_NONE;
    struct stat st;
    PyObject *data = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= limit) {
        data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)st.st_size);
        if (data != NULL && st.st_size > 0) {
            struct iovec iov = {PyBytes_AS_STRING(data), (size_t)st.st_size};
            ssize_t n = preadv2(fd, &iov, 1, 0, RWF_NOWAIT);
            if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) unsupported = 1;
            if (n != st.st_size) Py_CLEAR(data);
        }
    }
    close(fd);
    if (data == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return data == NULL ? NULL : Py_BuildValue("(NN)", data, stamp_of(&st));
#else
    Py_DECREF(path_obj);
    Py_RETURN_NONE;
#endif
}

/* sync(path, folder) -> None: open, fsync, close (O_DIRECTORY when `folder`). */
static PyObject *durable_sync(PyObject *self, PyObject *args) {
    PyObject *path_arg, *path_obj = NULL;
    int folder;
    if (!PyArg_ParseTuple(args, "Op:sync", &path_arg, &folder) || !PyUnicode_FSConverter(path_arg, &path_obj))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_obj);
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = sync_path(path, folder);
    Py_END_ALLOW_THREADS
    PyObject *result = err ? raise_at(err, AT_FIRST, path_arg, NULL) : Py_NewRef(Py_None);
    Py_DECREF(path_obj);
    return result;
}

/* sequence(steps) -> None: the steps in order, with the GIL released once, stopping at
 * the first that fails. Each step is a tuple:
 *   (0, path, data, sync)    create: a new file holding `data`, fsynced if `sync`;
 *   (1, path, None, folder)  sync: open, fsync, close (O_DIRECTORY when `folder`);
 *   (2, src, dst, None)      rename src over dst.
 * The failing step's error is raised naming its path(s); the steps before it stay done
 * (a file a failed create made is removed, as create() does). */
#define MAX_STEPS 8
enum step_kind { STEP_CREATE = 0, STEP_SYNC = 1, STEP_RENAME = 2 };

struct step {
    int kind, flag;
    PyObject *first_arg, *second_arg; /* borrowed from the steps tuple */
    PyObject *first, *second;         /* encoded paths (owned) */
    Py_buffer data;
    int has_data;
};

static void release_steps(struct step *steps, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(steps[i].first);
        Py_XDECREF(steps[i].second);
        if (steps[i].has_data) PyBuffer_Release(&steps[i].data);
    }
}

static int parse_step(PyObject *item, struct step *st) {
    PyObject *first, *second, *flag;
    memset(st, 0, sizeof(*st));
    if (!PyArg_ParseTuple(item, "iOOO:step", &st->kind, &first, &second, &flag)) return -1;
    st->first_arg = first;
    if (!PyUnicode_FSConverter(first, &st->first)) return -1;
    if (st->kind == STEP_CREATE) {
        if (PyObject_GetBuffer(second, &st->data, PyBUF_SIMPLE) < 0) return -1;
        st->has_data = 1;
    } else if (st->kind == STEP_RENAME) {
        st->second_arg = second;
        if (!PyUnicode_FSConverter(second, &st->second)) return -1;
        return 0;
    } else if (st->kind != STEP_SYNC) {
        PyErr_Format(PyExc_ValueError, "unknown step kind %d", st->kind);
        return -1;
    }
    st->flag = PyObject_IsTrue(flag);
    return st->flag < 0 ? -1 : 0;
}

/* (GIL released.) One step; returns 0 or the errno. */
static int run_step(const struct step *st) {
    const char *first = PyBytes_AS_STRING(st->first);
    if (st->kind == STEP_CREATE) {
        struct stat unused;
        return create_file(first, st->data.buf, st->data.len, 0644, st->flag, &unused);
    }
    if (st->kind == STEP_RENAME) return rename(first, PyBytes_AS_STRING(st->second)) < 0 ? errno : 0;
    return sync_path(first, st->flag);
}

static PyObject *durable_sequence(PyObject *self, PyObject *args) {
    PyObject *items;
    if (!PyArg_ParseTuple(args, "O!:sequence", &PyTuple_Type, &items)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (n > MAX_STEPS) return PyErr_Format(PyExc_ValueError, "at most %d steps", MAX_STEPS);
    struct step steps[MAX_STEPS];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_step(PyTuple_GET_ITEM(items, i), &steps[i]) < 0) {
            release_steps(steps, i + 1);
            return NULL;
        }
    }
    int err = 0;
    Py_ssize_t failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; failed < n; failed++) {
        if ((err = run_step(&steps[failed])) != 0) break;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = Py_None;
    if (err) {
        const struct step *st = &steps[failed];
        result = st->kind == STEP_RENAME ? raise_at(err, AT_SECOND, st->first_arg, st->second_arg)
                                         : raise_at(err, AT_FIRST, st->first_arg, NULL);
    } else {
        Py_INCREF(result);
    }
    release_steps(steps, n);
    return result;
}

/* buffer(size) -> bytearray of `size` bytes, not zero-filled (bytearray(size) is: a
 * memset of every buffer a big GET or a lane frame reads into, ~5 % of the CPU of
 * either). Its caller must only ever use the bytes a read put there. */
static PyObject *durable_buffer(PyObject *self, PyObject *args) {
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size)) return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffer size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, size);
}

static PyMethodDef methods[] = {
    {"create", durable_create, METH_VARARGS, "create(path, data, mode, sync) -> stamp"},
    {"replace", durable_replace, METH_VARARGS, "replace(tmp, target, data, mode, sync_folder) -> stamp"},
    {"read", durable_read, METH_VARARGS, "read(path) -> bytes"},
    {"read_cached", durable_read_cached, METH_VARARGS,
     "read_cached(path, limit) -> (bytes, stamp) | None"},
    {"sync", durable_sync, METH_VARARGS, "sync(path, folder) -> None"},
    {"buffer", durable_buffer, METH_VARARGS, "buffer(size) -> bytearray, not zero-filled"},
    {"sequence", durable_sequence, METH_VARARGS, "sequence(steps) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_durable",
    "Durable small-file system calls, each sequence in one release of the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit__durable(void) { return PyModule_Create(&module); }
