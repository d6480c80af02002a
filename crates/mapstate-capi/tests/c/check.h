/*
 * What the C test programs share: one line per check ("ok" or "FAIL"),
 * a count of the failures, and the exit status from it.
 */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <string.h>

#include "mapstate.h"

static int failures = 0;

/* Prints whether `cond` holds; on failure also the last mapstate error. */
__attribute__((unused)) static void truth(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) {
        printf("     (last error: %s)\n", mapstate_last_error());
        failures++;
    }
}

/* Checks that `rc` is `want` and, if `needle` is not NULL, that the last
 * error message contains it. */
__attribute__((unused)) static void expect(const char *what, int rc, int want, const char *needle) {
    const char *msg = mapstate_last_error();
    if (rc != want) {
        printf("FAIL %s: got %s (%d), want %s: %s\n", what, mapstate_error_name(rc), rc,
               mapstate_error_name(want), msg);
        failures++;
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        printf("FAIL %s: %s, but the message lacks \"%s\": %s\n", what, mapstate_error_name(rc),
               needle, msg);
        failures++;
    } else {
        printf("ok   %s: %s%s%s\n", what, mapstate_error_name(rc), rc != 0 ? ": " : "",
               rc != 0 ? msg : "");
    }
}

/* The last line every program prints, and its exit status. */
static int finish(void) {
    printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}

#endif
