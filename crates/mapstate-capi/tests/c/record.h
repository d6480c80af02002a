/*
 * The records that writer_kill.c commits and validator.c checks.
 *
 * Every commit number S writes a record into each of SLOTS slots: seq S,
 * counter S * SLOTS + slot, a text naming both, and a checksum (FNV-1a of
 * the other fields, seeded by the slot number, so a record copied into
 * another slot fails too). Some slots straddle a page boundary, so a state
 * torn between pages shows. Every byte outside the slots stays zero.
 */
#ifndef RECORD_H
#define RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct record {
    uint64_t seq;
    uint64_t counter;
    char text[48];
    uint64_t checksum;
};

#define STATE_LEN (1u << 20)
#define SLOTS 12

/* Byte offsets of the slots: 8-aligned, spread over the state; the ones
 * marked * straddle a page boundary. */
static const uint64_t slot_offset[SLOTS] = {
    0,
    200,
    4096 - 40,            /* * */
    8192,
    12288 + 1000,
    65536 - 40,           /* * */
    70000,
    131072,
    200000,
    262144 - 16,          /* * */
    500000,
    STATE_LEN - sizeof(struct record),
};

static inline uint64_t record_checksum(const struct record *r, unsigned slot) {
    const unsigned char *p = (const unsigned char *)r;
    uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)(slot + 1) * 0x100000001b3ull); /* FNV-1a */
    for (size_t i = 0; i < offsetof(struct record, checksum); i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The record commit `seq` puts into `slot`. */
static inline struct record record_for(uint64_t seq, unsigned slot) {
    struct record r;
    memset(&r, 0, sizeof r);
    r.seq = seq;
    r.counter = seq * SLOTS + slot;
    snprintf(r.text, sizeof r.text, "commit %llu, slot %u", (unsigned long long)seq, slot);
    r.checksum = record_checksum(&r, slot);
    return r;
}

#endif
