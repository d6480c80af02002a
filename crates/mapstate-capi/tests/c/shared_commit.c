/*
 * shared_commit DIR
 *
 * Group commit from C: 8 threads commit a counter N times each through
 * one shared handle with MAPSTATE_SYNC durability. The counter ends at
 * 8 * N, every returned sequence number is distinct (exactly 1..8N), the
 * counter each commit left equals its sequence number, and fewer
 * fdatasyncs than commits were made (they were shared). Then: a callback
 * returning non-zero commits nothing; calls back into the same handle
 * from its callback fail with MAPSTATE_E_IN_CALLBACK; a close while
 * another thread is inside a transaction is MAPSTATE_E_BUSY; the views'
 * functions; NULLs and wrong handles are error codes.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define THREADS 8
#define N 40

static mapstate_shared *s;

/* Adds 1 to the counter at 0 and to the thread's own counter at 8 + 8 * i;
 * `ctx` is the thread's index; the new counter goes to `after`. */
struct add {
    unsigned thread;
    uint64_t after;
};

static int add_one(mapstate_txn_view *t, void *ctx) {
    struct add *a = ctx;
    uint64_t total = 0, mine = 0;
    int rc = mapstate_txn_view_read_at(t, 0, &total, 8);
    if (rc != MAPSTATE_OK)
        return rc;
    uint8_t *data = NULL;
    uint64_t len = 0;
    if ((rc = mapstate_txn_view_data(t, &data, &len)) != MAPSTATE_OK)
        return rc;
    memcpy(&mine, data + 8 + 8 * a->thread, 8);
    mine += 1;
    memcpy(data + 8 + 8 * a->thread, &mine, 8); /* a plain store */
    total += 1;
    a->after = total;
    return mapstate_txn_view_write_at(t, 0, &total, 8);
}

struct worker {
    unsigned index;
    uint64_t seqs[N];
    uint64_t counters[N];
    int failures;
};

static void *work(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < N; i++) {
        struct add a = {w->index, 0};
        uint64_t seq = 0;
        int rc = mapstate_shared_transaction(s, add_one, &a, &seq);
        if (rc != MAPSTATE_OK) {
            printf("FAIL thread %u commit %d: %s: %s\n", w->index, i, mapstate_error_name(rc),
                   mapstate_last_error());
            w->failures++;
        }
        w->seqs[i] = seq;
        w->counters[i] = a.after;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Writes 0xff over the counters and returns 7: must commit nothing. */
static int scribble_and_refuse(mapstate_txn_view *t, void *ctx) {
    (void)ctx;
    uint8_t *data = NULL;
    uint64_t len = 0;
    if (mapstate_txn_view_data(t, &data, &len) != MAPSTATE_OK)
        return -1000;
    memset(data, 0xff, 64);
    return 7;
}

/* Fails a view call and passes its code on. */
static int pass_on_failure(mapstate_txn_view *t, void *ctx) {
    (void)ctx;
    uint8_t b = 1;
    return mapstate_txn_view_write_at(t, UINT64_MAX - 4, &b, 1);
}

/* Calls back into the shared handle; `ctx` gets the codes. */
struct reentry {
    int transaction, seq, len, checkpoint, close, syncs;
};

static int nothing(mapstate_txn_view *t, void *ctx) {
    (void)t;
    (void)ctx;
    return 0;
}

static int reenter(mapstate_txn_view *t, void *ctx) {
    (void)t;
    struct reentry *r = ctx;
    uint64_t x = 0;
    r->transaction = mapstate_shared_transaction(s, nothing, NULL, NULL);
    r->seq = mapstate_shared_seq(s, &x);
    r->len = mapstate_shared_len(s, &x);
    r->checkpoint = mapstate_shared_checkpoint(s);
    r->close = mapstate_shared_close(s);
    r->syncs = mapstate_shared_syncs(s, &x);
    return 0;
}

/* Holds the transaction until the main thread says so. */
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int inside = 0, release_it = 0;

static int hold(mapstate_txn_view *t, void *ctx) {
    (void)ctx;
    uint64_t v = 99;
    mapstate_txn_view_write_at(t, 0, &v, 8);
    pthread_mutex_lock(&gate);
    inside = 1;
    pthread_cond_broadcast(&gate_cv);
    while (!release_it)
        pthread_cond_wait(&gate_cv, &gate);
    pthread_mutex_unlock(&gate);
    return 0;
}

static void *hold_thread(void *arg) {
    uint64_t *seq = arg;
    int rc = mapstate_shared_transaction(s, hold, NULL, seq);
    return (void *)(intptr_t)rc;
}

/* The views' other functions: length, set_len, slice_mut. */
struct views {
    int len_rc, set_len_rc, slice_rc, slice_oob_rc, eow_rc, eow_from_rc;
    uint64_t len, len_after, max;
};

static int use_views(mapstate_txn_view *t, void *ctx) {
    struct views *v = ctx;
    v->len_rc = mapstate_txn_view_len(t, &v->len);
    v->set_len_rc = mapstate_txn_view_set_len(t, 8192);
    mapstate_txn_view_len(t, &v->len_after);
    uint8_t *p = NULL;
    v->slice_rc = mapstate_txn_view_slice_mut(t, 4096, 16, &p);
    if (v->slice_rc == MAPSTATE_OK)
        memset(p, 0xab, 16);
    v->slice_oob_rc = mapstate_txn_view_slice_mut(t, 8192, 1, &p);
    return 0;
}

/* Extend-on-write: the maximum, then discards (returns 5). */
static int eow_max(mapstate_txn_view *t, void *ctx) {
    struct views *v = ctx;
    uint8_t *p = NULL;
    v->eow_rc = mapstate_txn_view_extend_on_write(t, &p, &v->max);
    return 5;
}

/* Extend-on-write from 8192: a store 5000 bytes past it grows the state. */
static int eow_store(mapstate_txn_view *t, void *ctx) {
    struct views *v = ctx;
    uint8_t *p = NULL;
    v->eow_from_rc = mapstate_txn_view_extend_on_write_from(t, 8192, &p, NULL);
    if (v->eow_from_rc == MAPSTATE_OK)
        p[5000] = 0xcd;
    return 0;
}

static uint64_t read_u64(mapstate_reader *r, uint64_t off) {
    uint64_t v = 0;
    mapstate_reader_read_at(r, off, &v, 8, NULL);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: shared_commit DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/shared.db", argv[1]);

    mapstate_options opts = mapstate_options_default();
    opts.create = true;
    opts.len = 4096;
    opts.durability = MAPSTATE_SYNC;
    expect("open a shared writer", mapstate_shared_open(path, &opts, &s), MAPSTATE_OK, NULL);
    if (s == NULL)
        return finish();

    /* 8 threads x N commits. */
    static struct worker workers[THREADS];
    pthread_t threads[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        workers[i].index = i;
        pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    int thread_failures = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        thread_failures += workers[i].failures;
    }
    truth("every commit of the 8 threads returned 0", thread_failures == 0);

    static uint64_t all[THREADS * N];
    int counter_is_seq = 1;
    for (unsigned i = 0; i < THREADS; i++)
        for (int j = 0; j < N; j++) {
            all[i * N + j] = workers[i].seqs[j];
            if (workers[i].counters[j] != workers[i].seqs[j])
                counter_is_seq = 0;
        }
    qsort(all, THREADS * N, sizeof all[0], cmp_u64);
    int distinct = 1;
    for (unsigned k = 0; k < THREADS * N; k++)
        if (all[k] != k + 1)
            distinct = 0;
    truth("the returned sequence numbers are distinct: exactly 1 .. 8N", distinct);
    truth("each commit's counter is its sequence number", counter_is_seq);

    mapstate_reader *r = NULL;
    expect("open a reader", mapstate_reader_open(path, NULL, &r), MAPSTATE_OK, NULL);
    uint64_t total = read_u64(r, 0);
    printf("     counter %" PRIu64 "\n", total);
    truth("the counter is 8 * N", total == THREADS * N);
    int each = 1;
    for (unsigned i = 0; i < THREADS; i++)
        if (read_u64(r, 8 + 8 * i) != N)
            each = 0;
    truth("each thread's own counter is N", each);

    uint64_t syncs = 0, seq = 0, len = 0;
    expect("mapstate_shared_syncs", mapstate_shared_syncs(s, &syncs), MAPSTATE_OK, NULL);
    printf("     %d commits, %" PRIu64 " fdatasyncs\n", THREADS * N, syncs);
    truth("fewer fdatasyncs than commits (shared by group commit)",
          syncs >= 1 && syncs < THREADS * N);
    expect("mapstate_shared_seq", mapstate_shared_seq(s, &seq), MAPSTATE_OK, NULL);
    truth("the shared writer's seq is 8 * N", seq == THREADS * N);
    expect("mapstate_shared_len", mapstate_shared_len(s, &len), MAPSTATE_OK, NULL);
    truth("the length is 4096", len == 4096);

    /* A callback returning non-zero commits nothing. */
    uint64_t untouched = 12345;
    int rc = mapstate_shared_transaction(s, scribble_and_refuse, NULL, &untouched);
    truth("a callback's non-zero return is returned as it is", rc == 7);
    truth("... *seq is not written", untouched == 12345);
    expect("mapstate_shared_seq", mapstate_shared_seq(s, &seq), MAPSTATE_OK, NULL);
    truth("... no commit (seq unchanged)", seq == THREADS * N);
    truth("... the state is unchanged", read_u64(r, 0) == THREADS * N && read_u64(r, 8) == N);
    rc = mapstate_shared_transaction(s, pass_on_failure, NULL, NULL);
    expect("a callback passing on a failed view call's code keeps its message", rc,
           MAPSTATE_E_OUT_OF_BOUNDS, NULL);

    /* Calls back into the same handle from its callback. */
    struct reentry re;
    memset(&re, 0, sizeof re);
    expect("a transaction whose callback calls back into its handle",
           mapstate_shared_transaction(s, reenter, &re, NULL), MAPSTATE_OK, NULL);
    expect("... mapstate_shared_transaction inside", re.transaction, MAPSTATE_E_IN_CALLBACK,
           NULL);
    expect("... mapstate_shared_seq inside", re.seq, MAPSTATE_E_IN_CALLBACK, NULL);
    expect("... mapstate_shared_len inside", re.len, MAPSTATE_E_IN_CALLBACK, NULL);
    expect("... mapstate_shared_checkpoint inside", re.checkpoint, MAPSTATE_E_IN_CALLBACK, NULL);
    expect("... mapstate_shared_close inside", re.close, MAPSTATE_E_IN_CALLBACK, NULL);
    expect("... mapstate_shared_syncs inside (takes no lock)", re.syncs, MAPSTATE_OK, NULL);
    truth("MAPSTATE_E_IN_CALLBACK has a name",
          strcmp(mapstate_error_name(MAPSTATE_E_IN_CALLBACK), "MAPSTATE_E_IN_CALLBACK") == 0);

    /* A close while another thread is inside a transaction. */
    pthread_t holder;
    uint64_t held_seq = 0;
    pthread_create(&holder, NULL, hold_thread, &held_seq);
    pthread_mutex_lock(&gate);
    while (!inside)
        pthread_cond_wait(&gate_cv, &gate);
    pthread_mutex_unlock(&gate);
    expect("close while another thread is in a transaction", mapstate_shared_close(s),
           MAPSTATE_E_BUSY, "another thread is in a call");
    pthread_mutex_lock(&gate);
    release_it = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate);
    void *held_rc = NULL;
    pthread_join(holder, &held_rc);
    expect("... that transaction commits", (int)(intptr_t)held_rc, MAPSTATE_OK, NULL);
    truth("... as the next commit", held_seq == THREADS * N + 1 && read_u64(r, 0) == 99);

    /* The views' other functions. */
    struct views v;
    memset(&v, 0, sizeof v);
    expect("a transaction using the views' functions",
           mapstate_shared_transaction(s, use_views, &v, &seq), MAPSTATE_OK, NULL);
    expect("... mapstate_txn_view_len", v.len_rc, MAPSTATE_OK, NULL);
    truth("... length 4096, then 8192", v.len == 4096 && v.len_after == 8192);
    expect("... mapstate_txn_view_set_len", v.set_len_rc, MAPSTATE_OK, NULL);
    expect("... mapstate_txn_view_slice_mut", v.slice_rc, MAPSTATE_OK, NULL);
    expect("... mapstate_txn_view_slice_mut past the end", v.slice_oob_rc,
           MAPSTATE_E_OUT_OF_BOUNDS, NULL);
    uint8_t tail[16];
    mapstate_reader_read_at(r, 4096, tail, 16, NULL);
    truth("... the slice's stores and the new length committed",
          tail[0] == 0xab && tail[15] == 0xab && mapstate_shared_len(s, &len) == 0 && len == 8192);
    expect("a transaction asking for the maximum", mapstate_shared_transaction(s, eow_max, &v, NULL),
           5, NULL);
    expect("... mapstate_txn_view_extend_on_write", v.eow_rc, MAPSTATE_OK, NULL);
    truth("... its maximum is the default 1 GiB", v.max == (1ull << 30));
    expect("an extend-on-write store", mapstate_shared_transaction(s, eow_store, &v, &seq),
           MAPSTATE_OK, NULL);
    expect("... mapstate_txn_view_extend_on_write_from", v.eow_from_rc, MAPSTATE_OK, NULL);
    uint8_t grown = 0;
    mapstate_reader_read_at(r, 8192 + 5000, &grown, 1, NULL);
    truth("... grew the state to the end of the page written",
          mapstate_shared_len(s, &len) == 0 && len == 16384 && grown == 0xcd);

    /* Bad handles and NULLs. */
    uint64_t x = 0;
    expect("transaction with a NULL handle", mapstate_shared_transaction(NULL, nothing, NULL, NULL),
           MAPSTATE_E_BAD_HANDLE, "NULL");
    expect("transaction with a NULL callback", mapstate_shared_transaction(s, NULL, NULL, NULL),
           MAPSTATE_E_INVALID, "fn is NULL");
    expect("transaction with a reader as the handle",
           mapstate_shared_transaction((mapstate_shared *)r, nothing, NULL, NULL),
           MAPSTATE_E_BAD_HANDLE, "shared writer");
    expect("syncs with a NULL handle", mapstate_shared_syncs(NULL, &x), MAPSTATE_E_BAD_HANDLE,
           NULL);
    expect("syncs with a NULL out", mapstate_shared_syncs(s, NULL), MAPSTATE_E_INVALID, "syncs");
    expect("seq with a NULL out", mapstate_shared_seq(s, NULL), MAPSTATE_E_INVALID, "seq");
    expect("len with a NULL handle", mapstate_shared_len(NULL, &x), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("checkpoint", mapstate_shared_checkpoint(s), MAPSTATE_OK, NULL);
    expect("view functions with a NULL view", mapstate_txn_view_len(NULL, &x),
           MAPSTATE_E_BAD_HANDLE, "transaction view");
    uint8_t *p = NULL;
    expect("a reader as a view", mapstate_txn_view_data((mapstate_txn_view *)r, &p, &x),
           MAPSTATE_E_BAD_HANDLE, "transaction view");
    expect("a shared handle as a view", mapstate_txn_view_set_len((mapstate_txn_view *)s, 1),
           MAPSTATE_E_BAD_HANDLE, NULL);
    expect("the shared handle as a writer", mapstate_writer_begin((mapstate_writer *)s),
           MAPSTATE_E_BAD_HANDLE, NULL);
    mapstate_shared *other = (mapstate_shared *)1;
    expect("open with a NULL path", mapstate_shared_open(NULL, &opts, &other), MAPSTATE_E_INVALID,
           "path");
    truth("... *out is NULL", other == NULL);
    expect("open with a NULL out", mapstate_shared_open(path, &opts, NULL), MAPSTATE_E_INVALID,
           "out");
    expect("a second writer of the state", mapstate_shared_open(path, &opts, &other),
           MAPSTATE_E_LOCKED, NULL);
    expect("close a NULL handle", mapstate_shared_close(NULL), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("close a reader as a shared handle", mapstate_shared_close((mapstate_shared *)r),
           MAPSTATE_E_BAD_HANDLE, NULL);
    expect("close", mapstate_shared_close(s), MAPSTATE_OK, NULL);
    expect("close again", mapstate_shared_close(s), MAPSTATE_E_BAD_HANDLE, "closed already");

    /* A writer handle taken over by a shared one. */
    mapstate_writer *w = NULL;
    expect("open a writer", mapstate_writer_open(path, &opts, &w), MAPSTATE_OK, NULL);
    expect("share with a NULL out", mapstate_writer_share(w, NULL), MAPSTATE_E_INVALID, NULL);
    mapstate_writer_begin(w);
    expect("share a writer with a transaction open", mapstate_writer_share(w, &other),
           MAPSTATE_E_TXN_OPEN, NULL);
    expect("... the writer is still open", mapstate_txn_abort(w), MAPSTATE_OK, NULL);
    expect("share the writer", mapstate_writer_share(w, &s), MAPSTATE_OK, NULL);
    expect("... the writer handle is closed", mapstate_writer_close(w), MAPSTATE_E_BAD_HANDLE,
           NULL);
    struct add a = {0, 0};
    expect("a transaction through it", mapstate_shared_transaction(s, add_one, &a, &seq),
           MAPSTATE_OK, NULL);
    truth("... goes on from the state", a.after == 100 && seq == THREADS * N + 4);
    expect("share a NULL writer", mapstate_writer_share(NULL, &other), MAPSTATE_E_BAD_HANDLE,
           NULL);
    expect("close", mapstate_shared_close(s), MAPSTATE_OK, NULL);
    mapstate_reader_close(r);
    return finish();
}
