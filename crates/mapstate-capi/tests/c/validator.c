/*
 * validator PATH LIVE_DIR EXPECTED_SEQ   (EXPECTED_SEQ "-": any)
 * validator --layout                     (prints the slot offsets)
 *
 * Opens a reader, copies the whole state in one consistent read, and
 * checks every byte of it: every slot holds the record of the copy's
 * commit (seq, counter, text, checksum), and every byte outside the slots
 * is zero. A state torn between two commits, or showing any byte of an
 * uncommitted transaction, fails.
 *
 * Exit status: 0 all holds; 1 the state is not consistent (the first
 * difference is printed); 2 an API failure or bad arguments.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapstate.h"
#include "record.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "validator: %s failed: %s: %s\n", what, mapstate_error_name(rc),
            mapstate_last_error());
    return 2;
}

/* The slot whose bytes include `off`, or -1. */
static int slot_of(uint64_t off) {
    for (unsigned s = 0; s < SLOTS; s++)
        if (off >= slot_offset[s] && off < slot_offset[s] + sizeof(struct record))
            return (int)s;
    return -1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--layout") == 0) {
        for (unsigned s = 0; s < SLOTS; s++)
            printf("%" PRIu64 "%s", slot_offset[s], s + 1 < SLOTS ? " " : "\n");
        printf("%zu %u\n", sizeof(struct record), STATE_LEN);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: validator PATH LIVE_DIR EXPECTED_SEQ|-\n");
        return 2;
    }
    mapstate_options opts = mapstate_options_default();
    opts.live_dir = argv[2];
    mapstate_reader *r = NULL;
    int rc = mapstate_reader_open(argv[1], &opts, &r);
    if (rc != MAPSTATE_OK)
        return fail("mapstate_reader_open", rc);

    uint64_t len = 0;
    if ((rc = mapstate_reader_len(r, &len)) != MAPSTATE_OK)
        return fail("mapstate_reader_len", rc);
    if (len != STATE_LEN) {
        printf("FAIL: the state has %" PRIu64 " bytes, expected %u\n", len, STATE_LEN);
        return 1;
    }
    uint8_t *copy = malloc(STATE_LEN);
    if (copy == NULL)
        return 2;
    uint64_t seq = 0;
    if ((rc = mapstate_reader_read_at(r, 0, copy, STATE_LEN, &seq)) != MAPSTATE_OK)
        return fail("mapstate_reader_read_at", rc);
    if ((rc = mapstate_reader_close(r)) != MAPSTATE_OK)
        return fail("mapstate_reader_close", rc);

    if (strcmp(argv[3], "-") != 0) {
        uint64_t expected = strtoull(argv[3], NULL, 10);
        if (seq != expected) {
            printf("FAIL: the last commit is %" PRIu64 ", expected %" PRIu64 "\n", seq, expected);
            return 1;
        }
    }
    for (unsigned s = 0; s < SLOTS; s++) {
        struct record got;
        memcpy(&got, copy + slot_offset[s], sizeof got);
        /* Commit 0 is the new state: all zeros. */
        struct record want;
        if (seq == 0)
            memset(&want, 0, sizeof want);
        else
            want = record_for(seq, s);
        if (seq != 0 && got.checksum != record_checksum(&got, s)) {
            printf("FAIL: slot %u (offset %" PRIu64 "): bad checksum (a torn or foreign record)\n",
                   s, slot_offset[s]);
            return 1;
        }
        if (memcmp(&got, &want, sizeof got) != 0) {
            printf("FAIL: slot %u (offset %" PRIu64 "): holds seq %" PRIu64
                   ", counter %" PRIu64 ", text \"%.48s\"; the state is commit %" PRIu64 "\n",
                   s, slot_offset[s], got.seq, got.counter, got.text, seq);
            return 1;
        }
    }
    for (uint64_t off = 0; off < STATE_LEN; off++) {
        if (copy[off] != 0 && slot_of(off) < 0) {
            printf("FAIL: byte %" PRIu64 " outside every slot is %u, not 0\n", off, copy[off]);
            return 1;
        }
    }
    printf("ok: commit %" PRIu64 ", %u records and %u bytes checked\n", seq, SLOTS, STATE_LEN);
    free(copy);
    return 0;
}
