/*
 * identity DIR
 *
 * Where a live image came from, and the fault handler, from C:
 * - a new state's writer reports "rebuilt"/"missing", a reader opened
 *   while it runs reports "kept";
 * - after the durable file is restored from a copy taken earlier (same
 *   inode, as `cp state.bak state` does), a reader reports
 *   "rebuilt"/"other_epoch" and reads the copy's commit, not the newer
 *   live image's;
 * - mapstate_reinstall_fault_handler() after the program's own SIGSEGV
 *   handler: a store past the end of an attached file still grows it, and a
 *   SIGSEGV sent with kill() reaches the program's handler;
 * - the names of the new error codes.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapstate.h"

static int failures = 0;
static char live_dir[4096];

static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) {
        printf("     (last error: %s)\n", mapstate_last_error());
        failures++;
    }
}

static int same(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Copies the file `from` over `to` in place (`to` keeps its inode). */
static int copy_over(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_TRUNC);
    char buf[65536];
    ssize_t n;
    int ok = in >= 0 && out >= 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0)
        ok = write(out, buf, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return ok;
}

/* One commit that stores `v` at offset 0. */
static int commit_value(mapstate_writer *w, uint64_t v) {
    uint64_t seq;
    return mapstate_writer_begin(w) == 0 && mapstate_txn_write_at(w, 0, &v, sizeof v) == 0 &&
           mapstate_txn_commit(w, &seq) == 0;
}

static void live_image(const char *dir) {
    char path[4096], backup[4096];
    snprintf(path, sizeof path, "%s/state.db", dir);
    snprintf(backup, sizeof backup, "%s/state.bak", dir);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.live_dir = live_dir;

    mapstate_writer *w = NULL;
    truth("open a new state", mapstate_writer_open(path, &o, &w) == 0);
    const char *origin = NULL, *why = NULL;
    truth("writer_live_image", mapstate_writer_live_image(w, &origin, &why) == 0);
    printf("     writer: %s, %s\n", origin, why ? why : "(null)");
    truth("a new state's live image is rebuilt because it was missing",
          same(origin, "rebuilt") && same(why, "missing"));
    truth("commit 1 (value 111)", commit_value(w, 111));

    mapstate_reader *r = NULL;
    truth("open a reader", mapstate_reader_open(path, &o, &r) == 0);
    truth("reader_live_image", mapstate_reader_live_image(r, &origin, &why) == 0);
    truth("a reader beside the writer keeps its live image", same(origin, "kept") && why == NULL);
    truth("NULL origin is MAPSTATE_E_INVALID",
          mapstate_reader_live_image(r, NULL, &why) == MAPSTATE_E_INVALID);
    mapstate_reader_close(r);

    /* The backup: the durable file after a checkpoint, copied aside. */
    truth("checkpoint", mapstate_writer_checkpoint(w) == 0);
    {
        int fd = open(backup, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            close(fd);
        truth("take the backup", copy_over(path, backup));
    }
    truth("commit 2 (value 222)", commit_value(w, 222));
    truth("close the writer", mapstate_writer_close(w) == 0);

    /* Restore the backup over the durable file, in place. */
    truth("restore the backup over the state", copy_over(backup, path));
    truth("open a reader after the restore", mapstate_reader_open(path, &o, &r) == 0);
    truth("reader_live_image", mapstate_reader_live_image(r, &origin, &why) == 0);
    printf("     reader after restore: %s, %s\n", origin, why ? why : "(null)");
    truth("the stale live image is not trusted: rebuilt because of another epoch",
          same(origin, "rebuilt") && same(why, "other_epoch"));
    uint64_t v = 0, seq = 0;
    truth("read", mapstate_reader_read_at(r, 0, &v, sizeof v, &seq) == 0);
    printf("     read value %" PRIu64 " at commit %" PRIu64 "\n", v, seq);
    truth("the reader sees the backup's commit (value 111, commit 1)", v == 111 && seq == 1);
    mapstate_reader_close(r);
}

static volatile sig_atomic_t program_handler_ran = 0;

static void program_handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if (info->si_code <= 0)
        program_handler_ran = 1; /* sent by kill(): nothing to repair */
    else
        _exit(3); /* a real fault here would be mapstate's growth fault */
}

static void fault_handler(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/attached.dat", dir);
    unsigned char *p = mapstate_attach(path, 64ull << 20, MAPSTATE_ATTACH_CREATE);
    truth("attach (installs mapstate's fault handler)", p != NULL);
    if (p == NULL)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = program_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    truth("install the program's own SIGSEGV handler", sigaction(SIGSEGV, &sa, NULL) == 0);
    mapstate_reinstall_fault_handler();
    p[5u << 20] = 42; /* 5 MiB past the end of the new empty file */
    truth("a store past the end grows the file after the reinstall", p[5u << 20] == 42);
    kill(getpid(), SIGSEGV);
    truth("a SIGSEGV sent with kill() reaches the program's handler", program_handler_ran);
    truth("detach", mapstate_detach(p) == 0);
    struct stat st;
    truth("the file holds the store", stat(path, &st) == 0 && st.st_size > (5 << 20));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: identity DIR\n");
        return 2;
    }
    snprintf(live_dir, sizeof live_dir, "%s/live", argv[1]);
    mkdir(live_dir, 0700);
    live_image(argv[1]);
    fault_handler(argv[1]);
    truth("error names of the new codes",
          same(mapstate_error_name(MAPSTATE_E_FOREIGN_LOCK), "MAPSTATE_E_FOREIGN_LOCK") &&
              same(mapstate_error_name(MAPSTATE_E_WRITER_NOT_VISIBLE),
                   "MAPSTATE_E_WRITER_NOT_VISIBLE") &&
              same(mapstate_error_name(MAPSTATE_E_PAST_MAXIMUM), "MAPSTATE_E_PAST_MAXIMUM"));
    printf("\n%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
