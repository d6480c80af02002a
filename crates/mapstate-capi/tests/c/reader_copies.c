/*
 * reader_copies DIR
 *
 * What a reader learns besides single reads: mapstate_reader_snapshot()
 * (the whole state at one commit; a buffer too small gets the length it
 * needs) and mapstate_reader_changes_since() (the ranges each commit
 * changed, a cap too small for all commits, commits that left the ring as
 * one "missed" entry). And mapstate_writer_remove() deletes the state.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static mapstate_writer *w;

/* Commits `n` bytes of `v` at `off`. */
static uint64_t commit_at(uint64_t off, uint64_t n, int v) {
    uint8_t buf[256];
    memset(buf, v, sizeof buf);
    uint64_t seq = 0;
    mapstate_writer_begin(w);
    mapstate_txn_write_at(w, off, buf, n);
    mapstate_txn_commit(w, &seq);
    return seq;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: reader_copies DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/copies.db", argv[1]);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.len = 8192;
    o.live_dir = argv[1];
    mapstate_reader *r;
    truth("writer open", mapstate_writer_open(path, &o, &w) == MAPSTATE_OK);
    truth("reader open", mapstate_reader_open(path, &o, &r) == MAPSTATE_OK);
    if (w == NULL || r == NULL)
        return finish();

    /* Snapshot. */
    uint64_t s1 = commit_at(100, 10, 'a');
    uint8_t small[100];
    uint64_t len = 0, seq = 0;
    expect("snapshot into a buffer too small", mapstate_reader_snapshot(r, small, sizeof small, &len, &seq),
           MAPSTATE_E_INVALID_SIZE, "call again with a buffer of at least");
    truth("it says how long the state is", len == 8192);
    uint8_t *copy = malloc(len);
    expect("snapshot", mapstate_reader_snapshot(r, copy, len, &len, &seq), MAPSTATE_OK, NULL);
    truth("the copy is of the commit", seq == s1 && copy[100] == 'a' && copy[109] == 'a' && copy[110] == 0 &&
                                           copy[99] == 0);
    expect("snapshot with len NULL", mapstate_reader_snapshot(r, copy, 8192, NULL, NULL), MAPSTATE_E_INVALID,
           "len is NULL");
    free(copy);

    /* Changes: two commits, the second with two ranges. */
    uint64_t s2 = commit_at(5000, 3, 'b');
    mapstate_writer_begin(w);
    mapstate_txn_write_at(w, 0, "x", 1);
    mapstate_txn_write_at(w, 7000, "y", 1);
    uint64_t s3 = 0;
    mapstate_txn_commit(w, &s3);
    mapstate_event ev[8];
    uint64_t n = 0, through = 0;
    expect("changes since the first commit", mapstate_reader_changes_since(r, s1, ev, 8, &n, &through),
           MAPSTATE_OK, NULL);
    truth("three entries through the third commit", n == 3 && through == s3);
    truth("the second commit's range",
          ev[0].kind == MAPSTATE_EVENT_CHANGE && ev[0].seq == s2 && ev[0].offset == 5000 && ev[0].len == 3);
    int both = n == 3 && ev[1].seq == s3 && ev[2].seq == s3 &&
               ((ev[1].offset == 0 && ev[2].offset == 7000) || (ev[1].offset == 7000 && ev[2].offset == 0));
    truth("the third commit's two ranges", both);
    expect("a cap of 2", mapstate_reader_changes_since(r, s1, ev, 2, &n, &through), MAPSTATE_OK, NULL);
    truth("whole commits only: the second", n == 1 && through == s2);
    expect("a cap of 1 for the third commit", mapstate_reader_changes_since(r, s2, ev, 1, &n, &through),
           MAPSTATE_E_INVALID_SIZE, "at least 2 entries");
    expect("nothing new", mapstate_reader_changes_since(r, s3, ev, 8, &n, &through), MAPSTATE_OK, NULL);
    truth("no entries, through the same commit", n == 0 && through == s3);
    expect("count NULL", mapstate_reader_changes_since(r, s1, ev, 8, NULL, NULL), MAPSTATE_E_INVALID,
           "count is NULL");

    /* Many commits later, the first ones left the ring: one missed entry. */
    uint64_t last = s3;
    for (int i = 0; i < 200; i++)
        last = commit_at((uint64_t)i * 8, 8, i + 1);
    expect("changes since the start", mapstate_reader_changes_since(r, 0, ev, 8, &n, &through), MAPSTATE_OK,
           NULL);
    truth("first a missed entry from commit 1",
          n >= 1 && ev[0].kind == MAPSTATE_EVENT_MISSED && ev[0].seq == 1 && ev[0].last_seq > s3);
    truth("then changes", n == 8 && ev[1].kind == MAPSTATE_EVENT_CHANGE && ev[1].seq == ev[0].last_seq + 1);
    printf("     (missed %" PRIu64 "..%" PRIu64 ", through %" PRIu64 " of %" PRIu64 ")\n", ev[0].seq,
           ev[0].last_seq, through, last);

    /* Remove. */
    mapstate_reader_close(r);
    expect("remove", mapstate_writer_remove(w), MAPSTATE_OK, NULL);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", path);
    truth("the state and its log are gone", access(path, F_OK) != 0 && access(wal, F_OK) != 0);
    expect("remove again", mapstate_writer_remove(w), MAPSTATE_E_BAD_HANDLE, NULL);
    return finish();
}
