/*
 * options_size DIR
 *
 * mapstate_options carries its size, so programs and libraries of
 * different versions work together:
 * - a program built against an older header (here: the first version of
 *   the struct, 64 bytes, inside a buffer whose following bytes are all
 *   0x01) opens a state, and the library reads nothing past the 64 bytes:
 *   the fields added later take their defaults (release_live_image stays
 *   false, so the live image is still there after close);
 * - a program built against a newer header (a larger struct): init zeroes
 *   the bytes this library does not know and an open accepts them; an
 *   option set there is refused, naming the byte;
 * - a size too small (an uninitialized struct) or too large is refused;
 * - the fields added at the end work: release_live_image deletes the live
 *   image at close, mtime_interval_ms < 0 leaves the file's mtime alone
 *   and 0 sets it after every commit.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* The first version of mapstate_options, as an older mapstate.h had it. */
struct options_v1 {
    size_t size;
    bool create;
    bool wait_for_lock;
    uint64_t len;
    uint64_t max_size;
    uint32_t durability;
    uint32_t periodic_ms;
    const char *live_dir;
    uint64_t log_size;
    uint32_t mode;
    bool allow_unsuitable_filesystem;
};
_Static_assert(sizeof(struct options_v1) == 64, "the first version is 64 bytes");
_Static_assert(offsetof(struct options_v1, allow_unsuitable_filesystem) ==
                   offsetof(mapstate_options, allow_unsuitable_filesystem),
               "the first version is a prefix of this one");

static char dir[2048];

/* The number of live images in `d`. */
static int live_images(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dp != NULL && (e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > 5 && strcmp(e->d_name + len - 5, ".live") == 0;
    }
    if (dp != NULL)
        closedir(dp);
    return n;
}

/* A fresh live directory DIR/NAME. */
static const char *live_dir(const char *name) {
    static char buf[8][4096];
    static int next = 0;
    char *p = buf[next++ % 8];
    snprintf(p, 4096, "%s/%s", dir, name);
    mkdir(p, 0700);
    return p;
}

/* Opens `path` with `opts`, commits one byte, closes. */
static int one_commit(const char *path, const mapstate_options *opts) {
    mapstate_writer *w;
    int rc = mapstate_writer_open(path, opts, &w);
    if (rc != MAPSTATE_OK)
        return rc;
    uint8_t b = 1;
    if ((rc = mapstate_writer_begin(w)) == MAPSTATE_OK &&
        (rc = mapstate_txn_write_at(w, 0, &b, 1)) == MAPSTATE_OK)
        rc = mapstate_txn_commit(w, NULL);
    int closed = mapstate_writer_close(w);
    return rc != MAPSTATE_OK ? rc : closed;
}

static void an_older_program(void) {
    union {
        struct options_v1 v1;
        unsigned char bytes[sizeof(mapstate_options) + 64];
    } buf;
    memset(buf.bytes, 0x01, sizeof buf.bytes);
    expect("init of the first version", mapstate_options_init((mapstate_options *)&buf.v1, sizeof buf.v1),
           MAPSTATE_OK, NULL);
    int untouched = 1;
    for (size_t i = sizeof buf.v1; i < sizeof buf.bytes; i++)
        untouched &= buf.bytes[i] == 0x01;
    truth("init wrote nothing past the 64 bytes", untouched);
    truth("init set the size and the defaults",
          buf.v1.size == 64 && buf.v1.len == 4096 && buf.v1.mode == 0600 && !buf.v1.create);
    const char *live = live_dir("live-v1");
    buf.v1.create = true;
    buf.v1.live_dir = live;
    char path[4096];
    snprintf(path, sizeof path, "%s/v1.db", dir);
    expect("an open with the first version's struct",
           one_commit(path, (const mapstate_options *)&buf.v1), MAPSTATE_OK, NULL);
    /* Read past the 64 bytes, the 0x01s would have been release_live_image = true. */
    truth("the later fields took their defaults (the live image was kept)", live_images(live) == 1);

    mapstate_reader *r;
    expect("a reader with the first version's struct",
           mapstate_reader_open(path, (const mapstate_options *)&buf.v1, &r), MAPSTATE_OK, NULL);
    mapstate_reader_close(r);
}

static void a_newer_program(void) {
    struct {
        mapstate_options o;
        uint64_t future_option;
        uint64_t another;
    } big;
    memset(&big, 0xff, sizeof big);
    expect("init of a larger struct", mapstate_options_init(&big.o, sizeof big), MAPSTATE_OK, NULL);
    truth("init zeroed what this library does not know", big.future_option == 0 && big.another == 0);
    truth("init set the size", big.o.size == sizeof big);
    big.o.create = true;
    big.o.live_dir = live_dir("live-big");
    char path[4096];
    snprintf(path, sizeof path, "%s/big.db", dir);
    expect("an open with unknown options left at zero", one_commit(path, &big.o), MAPSTATE_OK, NULL);
    big.another = 7;
    char byte[64];
    snprintf(byte, sizeof byte, "byte %zu of the options", offsetof(__typeof__(big), another));
    expect("an open with an unknown option set", one_commit(path, &big.o), MAPSTATE_E_INVALID, byte);
    expect("the message says what to do", one_commit(path, &big.o), MAPSTATE_E_INVALID,
           "install the newer library");
    mapstate_reader *r;
    expect("a reader with an unknown option set", mapstate_reader_open(path, &big.o, &r),
           MAPSTATE_E_INVALID, byte);
}

static void bad_sizes(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sizes.db", dir);
    mapstate_options o = mapstate_options_default();
    truth("mapstate_options_default() sets this header's size", o.size == sizeof(mapstate_options));
    o.create = true;
    o.live_dir = live_dir("live-sizes");
    mapstate_writer *w;
    o.size = 0;
    expect("size 0 (an uninitialized struct)", mapstate_writer_open(path, &o, &w), MAPSTATE_E_INVALID,
           "options.size is 0, smaller than the 64 bytes");
    o.size = 63;
    expect("size 63", mapstate_writer_open(path, &o, &w), MAPSTATE_E_INVALID,
           "mapstate_options_init(&opts, sizeof opts)");
    o.size = 1u << 20;
    expect("size 1 MiB", mapstate_writer_open(path, &o, &w), MAPSTATE_E_INVALID, "larger than any");
    mapstate_reader *r;
    expect("a reader with size 0", (o.size = 0, mapstate_reader_open(path, &o, &r)), MAPSTATE_E_INVALID,
           "options.size is 0");
    expect("init with size 8", mapstate_options_init(&o, 8), MAPSTATE_E_INVALID, "smaller than");
    expect("init with NULL", mapstate_options_init(NULL, sizeof o), MAPSTATE_E_INVALID, "opts is NULL");
    truth("no state was made", access(path, F_OK) != 0);
}

static void release_live_image(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/release.db", dir);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.live_dir = live_dir("live-release");
    expect("a commit, keeping the live image", one_commit(path, &o), MAPSTATE_OK, NULL);
    truth("the live image is kept by default", live_images(o.live_dir) == 1);
    o.release_live_image = true;
    expect("a commit, releasing the live image", one_commit(path, &o), MAPSTATE_OK, NULL);
    truth("release_live_image deleted it at close", live_images(o.live_dir) == 0);
}

/* The mtime of `path` in nanoseconds. */
static long long mtime_ns(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}

/* Whether a commit with `interval_ms` changed the state file's mtime. */
static int commit_changes_mtime(const char *name, int64_t interval_ms) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mapstate_options o = mapstate_options_default();
    o.create = true;
    o.live_dir = live_dir("live-mtime");
    o.mtime_interval_ms = interval_ms;
    mapstate_writer *w;
    if (mapstate_writer_open(path, &o, &w) != MAPSTATE_OK)
        return -1;
    long long before = mtime_ns(path);
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
    uint8_t b = 1;
    mapstate_writer_begin(w);
    mapstate_txn_write_at(w, 0, &b, 1);
    int rc = mapstate_txn_commit(w, NULL);
    long long after = mtime_ns(path);
    mapstate_writer_remove(w);
    return rc == MAPSTATE_OK ? after != before : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: options_size DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    printf("     (sizeof(mapstate_options) = %zu)\n", sizeof(mapstate_options));
    an_older_program();
    a_newer_program();
    bad_sizes();
    release_live_image();
    truth("mtime_interval_ms 0: a commit sets the mtime", commit_changes_mtime("m0.db", 0) == 1);
    truth("mtime_interval_ms -1: a commit leaves it", commit_changes_mtime("mnever.db", -1) == 0);
    return finish();
}
