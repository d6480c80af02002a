/*
 * attach_unaligned DIR
 *
 * mapstate_attach of a file whose length is not a whole number of pages
 * (33 bytes): plain stores past its end inside its last page (mapped at
 * attach: no fault, no growth) must be in the file after mapstate_detach,
 * which sets the length to the end of that page. Zeros stored there leave
 * the length as it was.
 * Exit status 0 only if all holds.
 */
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

static int failures = 0;

static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) {
        printf("     (last error: %s)\n", mapstate_last_error());
        failures++;
    }
}

static const char OLD[] = "thirty-three bytes of old content"; /* 33 + NUL */
static const char TAIL[] = "forty bytes past the end, in its page!!!"; /* 40 + NUL */

/* Writes a file of the 33 bytes of OLD into DIR/NAME. */
static void make(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, OLD, 33) == 33;
    if (fd >= 0)
        close(fd);
    truth("write a 33-byte file", ok);
}

/* The file's bytes (its length in *len); NULL if it cannot be read. */
static unsigned char *slurp(const char *path, uint64_t *len) {
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    unsigned char *b = calloc(1, (size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return b;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: attach_unaligned DIR\n");
        return 2;
    }
    char path[4096];

    /* 40 bytes at offset 33, in the page the file ends in. */
    snprintf(path, sizeof path, "%s/tail.dat", argv[1]);
    make(path);
    unsigned char *base = mapstate_attach(path, MAX_SIZE, 0);
    truth("attach", base != NULL);
    if (base == NULL)
        return 1;
    memcpy(base + 33, TAIL, 40);
    truth("the stores read back through the mapping", memcmp(base + 33, TAIL, 40) == 0);
    truth("detach", mapstate_detach(base) == 0);
    uint64_t len = 0;
    unsigned char *file = slurp(path, &len);
    truth("the file can be read", file != NULL);
    truth("the length is the end of the page", len == PAGE);
    printf("     (length %" PRIu64 ", want %llu)\n", len, PAGE);
    if (file != NULL && len >= 73) {
        truth("the old bytes are there", memcmp(file, OLD, 33) == 0);
        truth("the stores are there", memcmp(file + 33, TAIL, 40) == 0);
        int zeros = 1;
        for (uint64_t i = 73; i < len; i++)
            zeros &= file[i] == 0;
        truth("every other byte is zero", zeros);
    }
    free(file);

    /* Zeros stored past the end do not count. */
    snprintf(path, sizeof path, "%s/zeros.dat", argv[1]);
    make(path);
    base = mapstate_attach(path, MAX_SIZE, 0);
    truth("attach", base != NULL);
    if (base == NULL)
        return 1;
    memset(base + 33, 0, 40);
    truth("detach", mapstate_detach(base) == 0);
    file = slurp(path, &len);
    truth("the length is unchanged", file != NULL && len == 33);
    truth("the old bytes are there", file != NULL && len >= 33 && memcmp(file, OLD, 33) == 0);
    free(file);

    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
