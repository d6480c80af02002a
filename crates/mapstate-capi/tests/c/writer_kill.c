/*
 * writer_kill PATH LIVE_DIR N
 *
 * In the style of the classic mmap example that maps a file, writes a
 * struct into it and dies: opens (or creates) the state, then N times
 * begins a transaction, stores a record into every slot with plain stores
 * through the transaction's pointer, and commits. Then it begins one more
 * transaction, writes half of the slots (and half of the next record), and
 * kills itself with SIGKILL before committing. validator.c must then find
 * exactly the state of the last commit.
 *
 * Prints "committed SEQ" before dying. Exit status 2 on any API failure;
 * the normal end is death by SIGKILL.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapstate.h"
#include "record.h"

#define CHECK(call)                                                                    \
    do {                                                                               \
        int rc_ = (call);                                                              \
        if (rc_ != MAPSTATE_OK) {                                                      \
            fprintf(stderr, "writer_kill: %s failed: %s: %s\n", #call,                 \
                    mapstate_error_name(rc_), mapstate_last_error());                  \
            exit(2);                                                                   \
        }                                                                              \
    } while (0)

static void store_record(uint8_t *data, unsigned slot, uint64_t seq) {
    struct record *r = (struct record *)(data + slot_offset[slot]);
    *r = record_for(seq, slot);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: writer_kill PATH LIVE_DIR N\n");
        return 2;
    }
    const char *path = argv[1];
    long n = strtol(argv[3], NULL, 10);

    mapstate_options opts = mapstate_options_default();
    opts.create = true;
    opts.len = STATE_LEN;
    opts.max_size = 64u << 20;
    opts.live_dir = argv[2];
    mapstate_writer *w = NULL;
    CHECK(mapstate_writer_open(path, &opts, &w));

    uint64_t seq = 0;
    CHECK(mapstate_writer_seq(w, &seq));
    for (long i = 0; i < n; i++) {
        uint8_t *data = NULL;
        uint64_t len = 0;
        CHECK(mapstate_writer_begin(w));
        CHECK(mapstate_txn_data(w, &data, &len));
        if (len < STATE_LEN) {
            fprintf(stderr, "writer_kill: the state has %" PRIu64 " bytes, expected %u\n", len,
                    STATE_LEN);
            return 2;
        }
        for (unsigned s = 0; s < SLOTS; s++)
            store_record(data, s, seq + 1);
        uint64_t committed = 0;
        CHECK(mapstate_txn_commit(w, &committed));
        if (committed != seq + 1) {
            fprintf(stderr, "writer_kill: commit returned seq %" PRIu64 ", expected %" PRIu64 "\n",
                    committed, seq + 1);
            return 2;
        }
        seq = committed;
    }

    /* The transaction that never commits: half of the slots, and the first
     * half of the record after them. */
    uint8_t *data = NULL;
    uint64_t len = 0;
    CHECK(mapstate_writer_begin(w));
    CHECK(mapstate_txn_data(w, &data, &len));
    for (unsigned s = 0; s < SLOTS / 2; s++)
        store_record(data, s, seq + 1);
    struct record half = record_for(seq + 1, SLOTS / 2);
    memcpy(data + slot_offset[SLOTS / 2], &half, sizeof half / 2);

    printf("committed %" PRIu64 "\n", seq);
    fflush(stdout);
    kill(getpid(), SIGKILL);
    return 3; /* not reached */
}
