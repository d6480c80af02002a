/*
 * aix_attach PATH
 *
 * A port of AIX shmat(SHM_MAP) code: attach a file with a maximum size,
 * store past its end with plain stores (the file grows, no growth code
 * here), detach, and check with stat() and read() that the file holds the
 * bytes and that its length is the written extent rounded up to the page.
 *
 * Expects in mapstate.h (not there yet):
 *   void *mapstate_attach(const char *path, uint64_t max_size, int flags);
 *   int mapstate_detach(void *addr);
 *   #define MAPSTATE_ATTACH_CREATE 1
 * Exit status 0 only if all holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapstate.h"

#define MAX_SIZE (64ull << 20)
#define PAGE 4096ull
#define AT ((3ull << 20) + 100) /* where the pattern goes: past the end */
#define PATTERN_LEN 200ull

static int failures = 0;

static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) {
        printf("     (last error: %s)\n", mapstate_last_error());
        failures++;
    }
}

static unsigned char pattern(uint64_t i) {
    return (unsigned char)(0xA5 ^ (i * 7));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: aix_attach PATH\n");
        return 2;
    }
    const char *path = argv[1];
    struct stat st;
    truth("the file is fresh", stat(path, &st) != 0 && errno == ENOENT);

    unsigned char *base = mapstate_attach(path, MAX_SIZE, MAPSTATE_ATTACH_CREATE);
    truth("attach", base != NULL);
    if (base == NULL)
        return 1;
    truth("the address is page-aligned", ((uintptr_t)base % PAGE) == 0);
    truth("attach created the file", stat(path, &st) == 0 && S_ISREG(st.st_mode));

    /* Plain stores 3 MiB past the end of an empty file. */
    for (uint64_t i = 0; i < PATTERN_LEN; i++)
        base[AT + i] = pattern(i);
    int same = 1;
    for (uint64_t i = 0; i < PATTERN_LEN; i++)
        same &= base[AT + i] == pattern(i);
    truth("the stores read back through the mapping", same);
    truth("bytes before them read as zero", base[0] == 0 && base[AT - 1] == 0);

    truth("detach", mapstate_detach(base) == 0);
    truth("detach again is an error", mapstate_detach(base) != 0);
    truth("detach(NULL) is an error", mapstate_detach(NULL) != 0);

    /* The file: the written extent rounded up to the page, the bytes there. */
    const uint64_t want_len = (AT + PATTERN_LEN + PAGE - 1) / PAGE * PAGE; /* 3 MiB + 4096 */
    truth("stat: the length is the written extent rounded up to the page",
          stat(path, &st) == 0 && (uint64_t)st.st_size == want_len);
    printf("     (length %lld, want %" PRIu64 ")\n", (long long)st.st_size, want_len);

    int fd = open(path, O_RDONLY);
    truth("open", fd >= 0);
    unsigned char *file = calloc(1, want_len);
    size_t got = 0;
    while (fd >= 0 && got < want_len) {
        ssize_t n = read(fd, file + got, want_len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    truth("read() gets the whole file", got == want_len);
    same = 1;
    for (uint64_t i = 0; i < PATTERN_LEN; i++)
        same &= file[AT + i] == pattern(i);
    truth("read() finds the pattern", same);
    int zeros = 1;
    for (uint64_t i = 0; i < want_len; i++)
        if (i < AT || i >= AT + PATTERN_LEN)
            zeros &= file[i] == 0;
    truth("every other byte is zero", zeros);
    close(fd);

    /* Attach again: the bytes are there; detaching without stores keeps
     * the length. */
    base = mapstate_attach(path, MAX_SIZE, 0);
    truth("attach again", base != NULL);
    if (base != NULL) {
        same = 1;
        for (uint64_t i = 0; i < PATTERN_LEN; i++)
            same &= base[AT + i] == pattern(i);
        truth("the pattern is there", same);
        truth("detach", mapstate_detach(base) == 0);
        truth("the length is unchanged", stat(path, &st) == 0 && (uint64_t)st.st_size == want_len);
    }
    free(file);
    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
