/*
 * extend_len DIR
 *
 * After an extend-on-write commit, mapstate_writer_len() reports the
 * length the commit gave the state (the end of the last page written), as
 * a reader does, not the length before the transaction.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

#define PAGE 4096ull

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: extend_len DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/grows.db", argv[1]);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.len = PAGE;
    o.max_size = 64ull << 20;
    o.live_dir = argv[1];
    mapstate_writer *w;
    truth("open", mapstate_writer_open(path, &o, &w) == MAPSTATE_OK);
    if (w == NULL)
        return finish();

    uint8_t *data;
    uint64_t max, len = 0, seq = 0;
    truth("begin", mapstate_writer_begin(w) == MAPSTATE_OK);
    truth("extend_on_write", mapstate_txn_extend_on_write(w, &data, &max) == MAPSTATE_OK);
    data[3 * PAGE + 5] = 42; /* past the end: the state grows to 4 pages */
    truth("commit", mapstate_txn_commit(w, &seq) == MAPSTATE_OK);
    truth("writer_len", mapstate_writer_len(w, &len) == MAPSTATE_OK);
    printf("     (writer_len %" PRIu64 ", want %llu)\n", len, 4 * PAGE);
    truth("writer_len is the length the commit gave the state", len == 4 * PAGE);

    mapstate_reader *r;
    uint64_t rlen = 0;
    truth("reader open", mapstate_reader_open(path, &o, &r) == MAPSTATE_OK);
    truth("reader_len", r != NULL && mapstate_reader_len(r, &rlen) == MAPSTATE_OK);
    truth("the reader agrees", rlen == len);
    mapstate_reader_close(r);

    /* A second one, from the new end on. */
    truth("begin", mapstate_writer_begin(w) == MAPSTATE_OK);
    truth("extend_on_write_from", mapstate_txn_extend_on_write_from(w, len, &data, &max) == MAPSTATE_OK);
    data[2 * PAGE] = 7; /* byte len + 2 pages: 7 pages */
    truth("commit", mapstate_txn_commit(w, &seq) == MAPSTATE_OK);
    truth("writer_len", mapstate_writer_len(w, &len) == MAPSTATE_OK);
    printf("     (writer_len %" PRIu64 ", want %llu)\n", len, 7 * PAGE);
    truth("writer_len follows the second commit", len == 7 * PAGE);
    truth("close", mapstate_writer_close(w) == MAPSTATE_OK);
    return finish();
}
