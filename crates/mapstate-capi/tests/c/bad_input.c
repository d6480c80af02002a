/*
 * bad_input DIR
 *
 * Misuse and bad files from C: every call returns the documented code and
 * message, and nothing crashes. In DIR (an empty scratch directory):
 * a missing file without create, a foreign file (left untouched), a second
 * writer while another process holds the state (LOCKED, naming its pid),
 * NULL pointers, bad handles and a double close, transaction calls in the
 * wrong order, out-of-range reads and writes, a handle used by two threads
 * at once, and a path that is not UTF-8.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapstate.h"

static int failures = 0;
static char live_dir[4096];

/* Checks that `rc` is `want` and, if `needle` is not NULL, that the last
 * error message contains it. */
static void expect(const char *what, int rc, int want, const char *needle) {
    const char *msg = mapstate_last_error();
    if (rc != want) {
        printf("FAIL %s: got %s (%d), want %s: %s\n", what, mapstate_error_name(rc), rc,
               mapstate_error_name(want), msg);
        failures++;
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        printf("FAIL %s: %s, but the message lacks \"%s\": %s\n", what, mapstate_error_name(rc),
               needle, msg);
        failures++;
    } else {
        printf("ok   %s: %s%s%s\n", what, mapstate_error_name(rc), rc != 0 ? ": " : "",
               rc != 0 ? msg : "");
    }
}

static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond)
        failures++;
}

static mapstate_options writer_options(void) {
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.len = 8192;
    o.max_size = 1u << 20;
    o.live_dir = live_dir;
    return o;
}

/* A second writer while another process holds the state: the child opens
 * it and reports its pid through a pipe, the parent's open must fail with
 * LOCKED naming that pid; then the parent closes the other pipe and the
 * child closes its writer and exits. */
static void second_writer(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/locked.db", dir);
    int ready[2], done[2];
    if (pipe(ready) != 0 || pipe(done) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        exit(2);
    }
    if (child == 0) {
        close(ready[0]);
        close(done[1]);
        mapstate_options o = writer_options();
        mapstate_writer *w = NULL;
        int rc = mapstate_writer_open(path, &o, &w);
        char byte = rc == MAPSTATE_OK ? 'y' : 'n';
        if (write(ready[1], &byte, 1) != 1)
            _exit(3);
        if (rc != MAPSTATE_OK) {
            fprintf(stderr, "child: %s\n", mapstate_last_error());
            _exit(4);
        }
        char c;
        while (read(done[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(mapstate_writer_close(w) == MAPSTATE_OK ? 0 : 5);
    }
    close(ready[1]);
    close(done[0]);
    char byte = 0;
    truth("the child opened the writer", read(ready[0], &byte, 1) == 1 && byte == 'y');

    char pid_text[64];
    snprintf(pid_text, sizeof pid_text, "(pid %ld)", (long)child);
    mapstate_options o = writer_options();
    mapstate_writer *w = (mapstate_writer *)&o; /* must be set to NULL */
    expect("second writer", mapstate_writer_open(path, &o, &w), MAPSTATE_E_LOCKED, pid_text);
    truth("a failed open sets *out to NULL", w == NULL);
    expect("second writer message names the path", MAPSTATE_E_LOCKED, MAPSTATE_E_LOCKED,
           "locked.db is locked by another writer");

    /* A reader may open the state while the writer holds it. */
    mapstate_reader *r = NULL;
    expect("reader beside the writer", mapstate_reader_open(path, &o, &r), MAPSTATE_OK, NULL);
    expect("close that reader", mapstate_reader_close(r), MAPSTATE_OK, NULL);

    close(done[1]);
    int status = 0;
    waitpid(child, &status, 0);
    truth("the child closed its writer", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect("writer after the holder is gone", mapstate_writer_open(path, &o, &w), MAPSTATE_OK,
           NULL);
    expect("close it", mapstate_writer_close(w), MAPSTATE_OK, NULL);
}

struct waiter {
    mapstate_reader *r;
    uint64_t after;
    int rc;
    uint64_t seq;
};

static void *wait_thread(void *arg) {
    struct waiter *wt = arg;
    /* BUSY if the main thread is inside a call right now: try again. */
    do
        wt->rc = mapstate_reader_wait_for_change(wt->r, wt->after, -1, &wt->seq);
    while (wt->rc == MAPSTATE_E_BUSY);
    return NULL;
}

/* A reader handle used by two threads at once: while one sleeps in
 * mapstate_reader_wait_for_change(), the other gets MAPSTATE_E_BUSY (no data
 * race); a commit wakes the sleeper. */
static void busy_handle(mapstate_writer *w, mapstate_reader *r) {
    uint64_t seq = 0;
    expect("reader seq", mapstate_reader_seq(r, &seq), MAPSTATE_OK, NULL);
    struct waiter wt = {r, seq, 1, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, wait_thread, &wt) != 0) {
        perror("pthread_create");
        exit(2);
    }
    /* Until the other thread is inside the call, the handle is free. */
    uint64_t s = 0;
    int rc;
    while ((rc = mapstate_reader_seq(r, &s)) == MAPSTATE_OK)
        sched_yield();
    expect("handle used by two threads", rc, MAPSTATE_E_BUSY, "one thread at a time");
    expect("close while another thread uses it", mapstate_reader_close(r), MAPSTATE_E_BUSY,
           NULL);
    uint64_t committed = 0;
    expect("begin", mapstate_writer_begin(w), MAPSTATE_OK, NULL);
    expect("write", mapstate_txn_write_at(w, 0, "wake", 4), MAPSTATE_OK, NULL);
    expect("commit wakes the waiter", mapstate_txn_commit(w, &committed), MAPSTATE_OK, NULL);
    pthread_join(t, NULL);
    truth("the waiter woke with the new commit", wt.rc == MAPSTATE_OK && wt.seq == committed);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bad_input DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    snprintf(live_dir, sizeof live_dir, "%s/live", dir);
    if (mkdir(live_dir, 0700) != 0) {
        perror("mkdir");
        return 2;
    }
    /* First, while this process has no threads: fork for the lock test. */
    second_writer(dir);

    char path[4096];
    mapstate_writer *w = NULL;
    mapstate_reader *r = NULL;
    mapstate_options o = writer_options();

    /* A missing file without create. */
    snprintf(path, sizeof path, "%s/missing.db", dir);
    mapstate_options no_create = o;
    no_create.create = false;
    expect("missing file, writer", mapstate_writer_open(path, &no_create, &w),
           MAPSTATE_E_NOT_FOUND, "missing.db does not exist");
    expect("missing file, reader", mapstate_reader_open(path, &no_create, &r),
           MAPSTATE_E_NOT_FOUND, "missing.db");
    truth("errno is 0 for a typed error", mapstate_errno() == 0);
    struct stat st;
    truth("nothing was created", stat(path, &st) != 0 && errno == ENOENT);

    /* A missing directory: an I/O error with its errno. */
    snprintf(path, sizeof path, "%s/no/such/dir.db", dir);
    int rc = mapstate_writer_open(path, &o, &w);
    truth("missing directory fails", rc != MAPSTATE_OK);
    printf("     (%s, errno %d: %s)\n", mapstate_error_name(rc), mapstate_errno(),
           mapstate_last_error());

    /* A foreign file: refused, and left as it was. */
    snprintf(path, sizeof path, "%s/foreign.txt", dir);
    char text[8192];
    memset(text, 'x', sizeof text);
    memcpy(text, "not a mapstate file\n", 20);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, sizeof text) != (ssize_t)sizeof text || close(fd) != 0) {
        perror(path);
        return 2;
    }
    expect("foreign file, writer (even with create)", mapstate_writer_open(path, &o, &w),
           MAPSTATE_E_FOREIGN, "is not a mapstate file");
    expect("foreign file, reader", mapstate_reader_open(path, &o, &r), MAPSTATE_E_FOREIGN,
           "foreign.txt");
    char back[sizeof text];
    fd = open(path, O_RDONLY);
    truth("the foreign file is untouched",
          fd >= 0 && read(fd, back, sizeof back) == (ssize_t)sizeof back &&
              memcmp(back, text, sizeof text) == 0 && lseek(fd, 0, SEEK_END) == (off_t)sizeof text);
    close(fd);

    /* A directory. */
    expect("a directory", mapstate_writer_open(dir, &o, &w), MAPSTATE_E_NOT_A_FILE, NULL);

    /* NULL pointers and bad arguments. */
    snprintf(path, sizeof path, "%s/state.db", dir);
    expect("NULL path", mapstate_writer_open(NULL, &o, &w), MAPSTATE_E_INVALID, "path is NULL");
    expect("empty path", mapstate_writer_open("", &o, &w), MAPSTATE_E_INVALID, "empty");
    expect("NULL out", mapstate_writer_open(path, &o, NULL), MAPSTATE_E_INVALID, "out is NULL");
    expect("NULL reader out", mapstate_reader_open(path, &o, NULL), MAPSTATE_E_INVALID, NULL);
    mapstate_options bad = o;
    bad.durability = 7;
    expect("unknown durability", mapstate_writer_open(path, &bad, &w), MAPSTATE_E_INVALID,
           "unknown durability 7");
    bad = o;
    bad.durability = MAPSTATE_PERIODIC;
    bad.periodic_ms = 0;
    expect("periodic without interval", mapstate_writer_open(path, &bad, &w), MAPSTATE_E_INVALID,
           "periodic_ms");
    expect("begin(NULL)", mapstate_writer_begin(NULL), MAPSTATE_E_BAD_HANDLE, "NULL");
    expect("commit(NULL)", mapstate_txn_commit(NULL, NULL), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("writer_close(NULL)", mapstate_writer_close(NULL), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("reader_close(NULL)", mapstate_reader_close(NULL), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("read(NULL)", mapstate_reader_read_at(NULL, 0, text, 1, NULL), MAPSTATE_E_BAD_HANDLE,
           NULL);
    expect("wait(NULL)", mapstate_reader_wait_for_change(NULL, 0, 0, NULL),
           MAPSTATE_E_BAD_HANDLE, NULL);

    /* Transaction calls in the wrong order. */
    expect("open", mapstate_writer_open(path, &o, &w), MAPSTATE_OK, NULL);
    uint64_t seq = 99, len = 0;
    uint8_t *data = NULL;
    expect("commit without begin", mapstate_txn_commit(w, &seq), MAPSTATE_E_NO_TXN,
           "mapstate_writer_begin");
    truth("a failed commit leaves *seq alone", seq == 99);
    expect("abort without begin", mapstate_txn_abort(w), MAPSTATE_E_NO_TXN, NULL);
    expect("data without begin", mapstate_txn_data(w, &data, &len), MAPSTATE_E_NO_TXN, NULL);
    expect("write without begin", mapstate_txn_write_at(w, 0, "x", 1), MAPSTATE_E_NO_TXN, NULL);
    expect("set_len without begin", mapstate_txn_set_len(w, 4096), MAPSTATE_E_NO_TXN, NULL);
    expect("begin", mapstate_writer_begin(w), MAPSTATE_OK, NULL);
    expect("begin twice", mapstate_writer_begin(w), MAPSTATE_E_TXN_OPEN, "commit or abort");
    expect("checkpoint inside a transaction", mapstate_writer_checkpoint(w),
           MAPSTATE_E_TXN_OPEN, NULL);
    expect("data with NULL data", mapstate_txn_data(w, NULL, &len), MAPSTATE_E_INVALID, NULL);
    expect("data", mapstate_txn_data(w, &data, &len), MAPSTATE_OK, NULL);
    truth("the transaction has the state's 8192 bytes", data != NULL && len == 8192);
    truth("its address is page-aligned", ((uintptr_t)data % 4096) == 0);
    expect("write past the end", mapstate_txn_write_at(w, 8190, "abcd", 4),
           MAPSTATE_E_OUT_OF_BOUNDS, "outside");
    {
        uint8_t *page = NULL;
        expect("slice_mut past the end", mapstate_txn_slice_mut(w, 8190, 4, &page),
               MAPSTATE_E_OUT_OF_BOUNDS, "outside");
        expect("slice_mut overflowing", mapstate_txn_slice_mut(w, UINT64_MAX, 2, &page),
               MAPSTATE_E_OUT_OF_BOUNDS, NULL);
        expect("slice_mut with NULL data", mapstate_txn_slice_mut(w, 0, 4, NULL),
               MAPSTATE_E_INVALID, NULL);
        expect("slice_mut", mapstate_txn_slice_mut(w, 4096 + 10, 20, &page), MAPSTATE_OK, NULL);
        truth("slice_mut gives the address of its offset", page == data + 4096 + 10);
        memcpy(page, "in a range", 10);
        uint64_t max = 0;
        expect("extend_on_write_from past the maximum",
               mapstate_txn_extend_on_write_from(w, (1u << 20) + 1, &page, &max),
               MAPSTATE_E_OUT_OF_BOUNDS, NULL);
        expect("extend_on_write_from", mapstate_txn_extend_on_write_from(w, 8192, &page, &max),
               MAPSTATE_OK, NULL);
        truth("extend_on_write_from gives the address of its offset and the maximum size",
              page == data + 8192 && max == (1u << 20));
    }
    expect("write NULL src", mapstate_txn_write_at(w, 0, NULL, 4), MAPSTATE_E_INVALID, NULL);
    expect("write nothing from NULL", mapstate_txn_write_at(w, 0, NULL, 0), MAPSTATE_OK, NULL);
    expect("set_len past the maximum", mapstate_txn_set_len(w, 2u << 20),
           MAPSTATE_E_INVALID_SIZE, "maximum size");
    memcpy(data + 100, "hello", 5);
    expect("write from the transaction's own bytes", mapstate_txn_write_at(w, 0, data + 100, 5),
           MAPSTATE_E_INVALID, "memmove");
    expect("commit", mapstate_txn_commit(w, &seq), MAPSTATE_OK, NULL);
    truth("the first commit is seq 1", seq == 1);
    expect("commit twice", mapstate_txn_commit(w, &seq), MAPSTATE_E_NO_TXN, NULL);
    expect("begin, grow", mapstate_writer_begin(w), MAPSTATE_OK, NULL);
    expect("set_len", mapstate_txn_set_len(w, 3 * 4096), MAPSTATE_OK, NULL);
    expect("data after set_len", mapstate_txn_data(w, &data, &len), MAPSTATE_OK, NULL);
    truth("the new length", len == 3 * 4096);
    data[len - 1] = 42;
    expect("abort", mapstate_txn_abort(w), MAPSTATE_OK, NULL);
    expect("writer len", mapstate_writer_len(w, &len), MAPSTATE_OK, NULL);
    truth("the abort kept the length", len == 8192);
    expect("writer seq", mapstate_writer_seq(w, &seq), MAPSTATE_OK, NULL);
    truth("the abort kept the seq", seq == 1);
    expect("writer_seq(NULL out)", mapstate_writer_seq(w, NULL), MAPSTATE_E_INVALID, NULL);
    expect("checkpoint", mapstate_writer_checkpoint(w), MAPSTATE_OK, NULL);

    /* Reader misuse. */
    expect("reader", mapstate_reader_open(path, &o, &r), MAPSTATE_OK, NULL);
    char buf[16] = {0};
    expect("read", mapstate_reader_read_at(r, 100, buf, 5, &seq), MAPSTATE_OK, NULL);
    truth("read sees the commit", memcmp(buf, "hello", 5) == 0 && seq == 1);
    expect("read the range's stores", mapstate_reader_read_at(r, 4096 + 10, buf, 10, NULL),
           MAPSTATE_OK, NULL);
    truth("the stores in the range were committed", memcmp(buf, "in a range", 10) == 0);
    expect("read past the end", mapstate_reader_read_at(r, 8190, buf, 4, NULL),
           MAPSTATE_E_OUT_OF_BOUNDS, NULL);
    expect("read into NULL", mapstate_reader_read_at(r, 0, NULL, 4, NULL), MAPSTATE_E_INVALID,
           NULL);
    expect("wait, nothing new, no time", mapstate_reader_wait_for_change(r, 1, 0, &seq),
           MAPSTATE_E_TIMEOUT, "no commit after 1");
    expect("wait, a newer commit exists", mapstate_reader_wait_for_change(r, 0, -1, &seq),
           MAPSTATE_OK, NULL);
    truth("wait returns the newest seq", seq == 1);
    expect("wait with the longest timeout", mapstate_reader_wait_for_change(r, 0, INT64_MAX, &seq),
           MAPSTATE_OK, NULL);
    expect("read of more bytes than memory holds",
           mapstate_reader_read_at(r, 0, buf, UINT64_MAX, NULL), MAPSTATE_E_INVALID,
           "does not fit in memory");
    expect("a reader passed as a writer", mapstate_writer_begin((mapstate_writer *)r),
           MAPSTATE_E_BAD_HANDLE, "not an open writer handle");
    expect("a writer passed as a reader", mapstate_reader_seq((mapstate_reader *)w, &seq),
           MAPSTATE_E_BAD_HANDLE, NULL);
    expect("a reader closed as a writer", mapstate_writer_close((mapstate_writer *)r),
           MAPSTATE_E_BAD_HANDLE, NULL);

    busy_handle(w, r);

    /* Double close. */
    expect("close reader", mapstate_reader_close(r), MAPSTATE_OK, NULL);
    expect("close reader again", mapstate_reader_close(r), MAPSTATE_E_BAD_HANDLE,
           "closed already");
    expect("close writer", mapstate_writer_close(w), MAPSTATE_OK, NULL);
    expect("close writer again", mapstate_writer_close(w), MAPSTATE_E_BAD_HANDLE,
           "closed already");

    /* A writer closed with its transaction open: aborted, not committed. */
    expect("reopen", mapstate_writer_open(path, &o, &w), MAPSTATE_OK, NULL);
    expect("begin", mapstate_writer_begin(w), MAPSTATE_OK, NULL);
    expect("write", mapstate_txn_write_at(w, 100, "HELLO", 5), MAPSTATE_OK, NULL);
    expect("close with the transaction open", mapstate_writer_close(w), MAPSTATE_OK, NULL);
    expect("reader", mapstate_reader_open(path, &o, &r), MAPSTATE_OK, NULL);
    expect("read", mapstate_reader_read_at(r, 100, buf, 5, &seq), MAPSTATE_OK, NULL);
    truth("the open transaction was discarded", memcmp(buf, "hello", 5) == 0 && seq == 2);
    expect("close reader", mapstate_reader_close(r), MAPSTATE_OK, NULL);

    /* A path that is not UTF-8 is a valid Linux path. */
    snprintf(path, sizeof path, "%s/caf\xe9-latin1.db", dir);
    expect("non-UTF-8 path, create", mapstate_writer_open(path, &o, &w), MAPSTATE_OK, NULL);
    expect("close", mapstate_writer_close(w), MAPSTATE_OK, NULL);
    expect("non-UTF-8 path, reader", mapstate_reader_open(path, &o, &r), MAPSTATE_OK, NULL);
    expect("close", mapstate_reader_close(r), MAPSTATE_OK, NULL);
    truth("the file has that name", stat(path, &st) == 0 && S_ISREG(st.st_mode));

    /* Names and version. */
    truth("error names", strcmp(mapstate_error_name(MAPSTATE_E_LOCKED), "MAPSTATE_E_LOCKED") == 0 &&
                             strcmp(mapstate_error_name(12345), "MAPSTATE_E_UNKNOWN") == 0);
    truth("version", strlen(mapstate_version()) > 0);

    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
