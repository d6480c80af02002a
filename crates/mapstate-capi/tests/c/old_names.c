/*
 * old_names DIR
 *
 * The old names of the renamed functions still link and work: a program
 * written against them (mapstate_begin, mapstate_write, mapstate_commit,
 * ...) keeps its behaviour. The header marks them deprecated, so gcc warns
 * at each call; this file silences that warning (the tests build with
 * -Werror), except when compiled with -DOLD_NAMES_WARN, which
 * tests/c_programs.rs uses to check that every call below warns and names
 * the new function.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mapstate.h"

#ifndef OLD_NAMES_WARN
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

static int failures = 0;

static void expect(const char *what, int rc, int want) {
    if (rc != want) {
        printf("FAIL %s: got %s (%d), want %s: %s\n", what, mapstate_error_name(rc), rc,
               mapstate_error_name(want), mapstate_last_error());
        failures++;
    } else {
        printf("ok   %s: %s\n", what, mapstate_error_name(rc));
    }
}

static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond)
        failures++;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: old_names DIR\n");
        return 2;
    }
    char path[4096], live[4096];
    snprintf(path, sizeof path, "%s/old.db", argv[1]);
    snprintf(live, sizeof live, "%s/live", argv[1]);
    if (mkdir(live, 0700) != 0) {
        perror("mkdir");
        return 2;
    }
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.live_dir = live;
    mapstate_writer *w = NULL;
    mapstate_reader *r = NULL;
    expect("writer open", mapstate_writer_open(path, &o, &w), MAPSTATE_OK);
    expect("reader open", mapstate_reader_open(path, &o, &r), MAPSTATE_OK);

    /* Every old name, as a program written before the rename calls it. */
    uint64_t seq = 0, newest = 0;
    expect("mapstate_begin", mapstate_begin(w), MAPSTATE_OK);
    expect("mapstate_begin twice (same code as before)", mapstate_begin(w),
           MAPSTATE_E_TXN_OPEN);
    expect("mapstate_set_len", mapstate_set_len(w, 8192), MAPSTATE_OK);
    expect("mapstate_write", mapstate_write(w, 5000, "old name", 8), MAPSTATE_OK);
    expect("mapstate_commit", mapstate_commit(w, &seq), MAPSTATE_OK);
    truth("the commit is seq 1", seq == 1);
    expect("mapstate_commit without a transaction", mapstate_commit(w, &seq),
           MAPSTATE_E_NO_TXN);
    expect("mapstate_begin", mapstate_begin(w), MAPSTATE_OK);
    expect("mapstate_write", mapstate_write(w, 0, "aborted", 7), MAPSTATE_OK);
    expect("mapstate_abort", mapstate_abort(w), MAPSTATE_OK);
    expect("mapstate_checkpoint", mapstate_checkpoint(w), MAPSTATE_OK);

    expect("mapstate_wait_for_change", mapstate_wait_for_change(r, 0, -1, &newest),
           MAPSTATE_OK);
    truth("it returns the newest seq", newest == 1);
    expect("mapstate_wait_for_change times out", mapstate_wait_for_change(r, 1, 0, &newest),
           MAPSTATE_E_TIMEOUT);
    char buf[8] = {0};
    uint64_t read_seq = 0;
    expect("mapstate_read", mapstate_read(r, 5000, buf, 8, &read_seq), MAPSTATE_OK);
    truth("it reads the commit", memcmp(buf, "old name", 8) == 0 && read_seq == 1);
    expect("mapstate_read of the aborted bytes", mapstate_read(r, 0, buf, 7, NULL), MAPSTATE_OK);
    truth("the abort left them zero", memcmp(buf, "\0\0\0\0\0\0\0", 7) == 0);
    expect("mapstate_read past the end", mapstate_read(r, 8190, buf, 4, NULL),
           MAPSTATE_E_OUT_OF_BOUNDS);

    /* The old and the new names are one function. */
    expect("mapstate_begin", mapstate_begin(w), MAPSTATE_OK);
    expect("then mapstate_txn_commit", mapstate_txn_commit(w, &seq), MAPSTATE_OK);
    truth("an empty commit keeps seq 1", seq == 1);

    expect("reader close", mapstate_reader_close(r), MAPSTATE_OK);
    expect("writer close", mapstate_writer_close(w), MAPSTATE_OK);
    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
