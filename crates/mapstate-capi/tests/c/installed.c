/*
 * installed DIR
 *
 * Built against an installed copy of the library (`pkg-config --cflags
 * --libs mapstate`): the installed header's version is the library's, and
 * a writer and a reader share a state in DIR.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mapstate.h>

#include "check.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: installed DIR\n");
        return 2;
    }
    printf("version %s\n", mapstate_version());
    truth("the header's version is the library's", strcmp(mapstate_version(), MAPSTATE_VERSION_STRING) == 0);
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/installed.db", argv[1]);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.live_dir = argv[1];
    mapstate_writer *w;
    mapstate_reader *r;
    uint64_t seq = 0, got_seq = 0;
    char got[6] = {0};
    truth("writer open", mapstate_writer_open(path, &o, &w) == MAPSTATE_OK);
    truth("begin", mapstate_writer_begin(w) == MAPSTATE_OK);
    truth("write", mapstate_txn_write_at(w, 0, "hello", 5) == MAPSTATE_OK);
    truth("commit", mapstate_txn_commit(w, &seq) == MAPSTATE_OK && seq == 1);
    truth("reader open", mapstate_reader_open(path, &o, &r) == MAPSTATE_OK);
    truth("read", mapstate_reader_read_at(r, 0, got, 5, &got_seq) == MAPSTATE_OK);
    truth("the reader sees the commit", got_seq == 1 && strcmp(got, "hello") == 0);
    truth("reader close", mapstate_reader_close(r) == MAPSTATE_OK);
    truth("remove", mapstate_writer_remove(w) == MAPSTATE_OK);
    return finish();
}
