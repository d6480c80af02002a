/*
 * shmat_port DIR: a C program ported from AIX shmat(SHM_MAP) to mapstate.
 *
 * The AIX original maps a file, stores into it and detaches:
 *
 *     int fd = open(path, O_RDWR | O_CREAT, 0600);
 *     struct table *t = shmat(fd, 0, SHM_MAP);    // the file, at an address
 *     t->rows[t->n++] = row;                      // plain stores; grows the file
 *     shmdt(t);                                   // written back
 *
 * A SIGKILL between the two stores leaves `n` counted without its row (or
 * the row without `n`), and readers in other processes see each store as
 * it happens. The port keeps the plain stores and puts them in a
 * transaction: every other process sees both stores or neither, and a kill
 * at any instruction loses nothing that was committed.
 *
 * Build: cc shmat_port.c $(pkg-config --cflags --libs mapstate)
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mapstate.h"

struct row {
    uint64_t id;
    char name[24];
};

struct table {
    uint64_t n;
    struct row rows[];
};

static int failed = 0;

static void check(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        printf("     (%s)\n", mapstate_last_error());
        failed++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: shmat_port DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/table.state", argv[1]);

    /* open(O_CREAT) + shmat(SHM_MAP): a writer on a state that grows when
       stored into, up to max_size. */
    struct mapstate_options o = mapstate_options_default();
    o.create = 1;
    o.len = 0;
    o.max_size = 1 << 30;
    struct mapstate_writer *w;
    check("open the state", mapstate_writer_open(path, &o, &w) == 0);

    for (uint64_t i = 0; i < 3; i++) {
        check("begin", mapstate_writer_begin(w) == 0);
        /* The address the stores go to, as shmat returned; the file grows
           as the stores reach past its end (no ftruncate). */
        uint8_t *base;
        uint64_t max;
        check("extend on write", mapstate_txn_extend_on_write(w, &base, &max) == 0);
        struct table *t = (struct table *)base;
        /* The original code, unchanged: two plain stores. */
        t->rows[t->n].id = 100 + i;
        snprintf(t->rows[t->n].name, sizeof t->rows[t->n].name, "row %llu",
                 (unsigned long long)i);
        t->n++;
        /* One line more than the original: both stores, or neither. */
        uint64_t seq;
        check("commit", mapstate_txn_commit(w, &seq) == 0 && seq == i + 1);
    }
    /* shmdt: the writer closes (a checkpoint: on disk). */
    check("close", mapstate_writer_close(w) == 0);

    /* Any other process: a consistent copy of the table. */
    struct mapstate_reader *r;
    check("open a reader", mapstate_reader_open(path, NULL, &r) == 0);
    uint64_t n = 0, seq;
    check("read n", mapstate_reader_read_at(r, 0, &n, sizeof n, &seq) == 0);
    check("three rows, three commits", n == 3 && seq == 3);
    struct row last;
    check("read the last row",
          mapstate_reader_read_at(r, sizeof(uint64_t) + 2 * sizeof(struct row), &last,
                                  sizeof last, &seq) == 0);
    check("the last row is whole", last.id == 102 && strcmp(last.name, "row 2") == 0);
    printf("table: %llu rows, the last \"%s\"\n", (unsigned long long)n, last.name);
    check("close the reader", mapstate_reader_close(r) == 0);

    /* Delete the state and its live image (a test leaves nothing). */
    check("reopen", mapstate_writer_open(path, NULL, &w) == 0);
    check("remove", mapstate_writer_remove(w) == 0);
    printf("%d failed\n", failed);
    return failed != 0;
}
