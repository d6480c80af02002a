/*
 * attach_past_maximum DIR
 *
 * A store just past the max_size given to mapstate_attach(): detach
 * reports MAPSTATE_E_PAST_MAXIMUM with a message that speaks of the
 * attachment (the offset, the maximum, attach with a larger max_size),
 * not of transactions or recreating a state, which attach has neither of.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "check.h"

#define MAX_SIZE (1ull << 20)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: attach_past_maximum DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/plain.dat", argv[1]);
    unsigned char *base = mapstate_attach(path, MAX_SIZE, MAPSTATE_ATTACH_CREATE);
    truth("attach", base != NULL);
    if (base == NULL)
        return finish();
    base[100] = 1;             /* inside: kept */
    base[MAX_SIZE + 100] = 2;  /* in the guard just past the maximum */
    int rc = mapstate_detach(base);
    expect("detach after a store past max_size", rc, MAPSTATE_E_PAST_MAXIMUM, "max_size");
    const char *msg = mapstate_last_error();
    truth("the message names the maximum", strstr(msg, "1048576") != NULL);
    truth("the message says to attach with a larger max_size",
          strstr(msg, "mapstate_attach") != NULL);
    truth("the message speaks of no transaction", strstr(msg, "transaction") == NULL);
    truth("the message does not say to recreate a state", strstr(msg, "recreate") == NULL);
    /* The rest was written and the file cut to the written extent. */
    struct stat st;
    truth("the file ends at the page written below the maximum",
          stat(path, &st) == 0 && st.st_size == 4096);
    FILE *f = fopen(path, "rb");
    unsigned char b[101] = {0};
    truth("the store below the maximum is in the file",
          f != NULL && fread(b, 1, sizeof b, f) == sizeof b && b[100] == 1);
    if (f != NULL)
        fclose(f);
    expect("the address is detached all the same", mapstate_detach(base), MAPSTATE_E_BAD_HANDLE,
           NULL);
    return finish();
}
