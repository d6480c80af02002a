/*
 * shared_kill PATH LIVE_DIR
 *
 * 8 threads commit a counter through one shared handle with
 * MAPSTATE_SYNC durability until the process is killed: each transaction
 * adds 1 to the counter at offset 0 and to the thread's own counter at
 * 8 + 8 * thread. After each commit returns (durable), the thread prints
 * "durable SEQ COUNTER" in one write(2) (atomic on a pipe). The test
 * (tests/c_programs.rs) SIGKILLs it and reopens the state.
 *
 * Exit status 2 on any API failure; the normal end is death by SIGKILL.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapstate.h"

#define THREADS 8

static mapstate_shared *s;

static void die(const char *what, int rc) {
    fprintf(stderr, "shared_kill: %s: %s: %s\n", what, mapstate_error_name(rc),
            mapstate_last_error());
    exit(2);
}

struct add {
    unsigned thread;
    uint64_t after;
};

static int add_one(mapstate_txn_view *t, void *ctx) {
    struct add *a = ctx;
    uint8_t *data = NULL;
    uint64_t len = 0, total, mine;
    int rc = mapstate_txn_view_data(t, &data, &len);
    if (rc != MAPSTATE_OK)
        return rc;
    memcpy(&total, data, 8);
    memcpy(&mine, data + 8 + 8 * a->thread, 8);
    total += 1;
    mine += 1;
    memcpy(data, &total, 8);
    memcpy(data + 8 + 8 * a->thread, &mine, 8);
    a->after = total;
    return MAPSTATE_OK;
}

static void *work(void *arg) {
    struct add a = {(unsigned)(uintptr_t)arg, 0};
    for (;;) {
        uint64_t seq = 0;
        int rc = mapstate_shared_transaction(s, add_one, &a, &seq);
        if (rc != MAPSTATE_OK)
            die("mapstate_shared_transaction", rc);
        char line[64];
        int n = snprintf(line, sizeof line, "durable %" PRIu64 " %" PRIu64 "\n", seq, a.after);
        if (write(1, line, (size_t)n) != n)
            exit(2);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: shared_kill PATH LIVE_DIR\n");
        return 2;
    }
    mapstate_options opts = mapstate_options_default();
    opts.create = true;
    opts.len = 4096;
    opts.durability = MAPSTATE_SYNC;
    opts.live_dir = argv[2];
    int rc = mapstate_shared_open(argv[1], &opts, &s);
    if (rc != MAPSTATE_OK)
        die("mapstate_shared_open", rc);
    pthread_t threads[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, work, (void *)i);
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    return 3; /* not reached */
}
