/*
 * attach_trim DIR
 *
 * mapstate_attach_high_water() follows the stores (a page of zeros does
 * not count), mapstate_attach_trim() cuts the file there and keeps the
 * attachment, and later stores grow it again.
 *
 * Prints one line per check; exit status 0 only if all hold.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "check.h"

#define PAGE 4096ull

static long long file_len(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: attach_trim DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/trim.dat", argv[1]);
    unsigned char *base = mapstate_attach(path, 64ull << 20, MAPSTATE_ATTACH_CREATE);
    truth("attach", base != NULL);
    if (base == NULL)
        return finish();
    uint64_t hw = 1;
    expect("high water of a new file", mapstate_attach_high_water(base, &hw), MAPSTATE_OK, NULL);
    truth("is 0", hw == 0);
    base[2 * PAGE + 10] = 1;
    base[40 * PAGE] = 0; /* a store of zero grows the file but does not count */
    expect("high water", mapstate_attach_high_water(base, &hw), MAPSTATE_OK, NULL);
    printf("     (high water %" PRIu64 ", file %lld)\n", hw, file_len(path));
    truth("is the end of the page written", hw == 3 * PAGE);
    truth("the file grew past it", file_len(path) > (long long)(3 * PAGE));
    uint64_t len = 0;
    expect("trim", mapstate_attach_trim(base, &len), MAPSTATE_OK, NULL);
    truth("to the high water", len == 3 * PAGE && file_len(path) == (long long)(3 * PAGE));
    base[10 * PAGE] = 2;
    expect("high water after a later store", mapstate_attach_high_water(base, &hw), MAPSTATE_OK, NULL);
    truth("follows it", hw == 11 * PAGE);
    expect("high water of another address", mapstate_attach_high_water(base + 1, &hw),
           MAPSTATE_E_BAD_HANDLE, "not an address mapstate_attach() returned");
    expect("trim of NULL", mapstate_attach_trim(NULL, NULL), MAPSTATE_E_BAD_HANDLE, NULL);
    expect("high water into NULL", mapstate_attach_high_water(base, NULL), MAPSTATE_E_INVALID, "out is NULL");
    expect("detach", mapstate_detach(base), MAPSTATE_OK, NULL);
    truth("the file ends at the last page written", file_len(path) == (long long)(11 * PAGE));
    expect("high water after detach", mapstate_attach_high_water(base, &hw), MAPSTATE_E_BAD_HANDLE, NULL);
    return finish();
}
