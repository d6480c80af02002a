/*
 * version
 *
 * The header's version macros agree with each other and with the
 * library's mapstate_version(); prints "version X.Y.Z" (which the test
 * compares with the Cargo version).
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(void) {
    char numbers[64];
    snprintf(numbers, sizeof numbers, "%d.%d.%d", MAPSTATE_VERSION_MAJOR, MAPSTATE_VERSION_MINOR,
             MAPSTATE_VERSION_PATCH);
    printf("version %s\n", MAPSTATE_VERSION_STRING);
    truth("MAPSTATE_VERSION_STRING is MAJOR.MINOR.PATCH", strcmp(numbers, MAPSTATE_VERSION_STRING) == 0);
    truth("mapstate_version() is MAPSTATE_VERSION_STRING",
          strcmp(mapstate_version(), MAPSTATE_VERSION_STRING) == 0);
    return finish();
}
