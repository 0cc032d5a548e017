/*
 * The workload: CRC32 over a buffer, a quicksort, an integer matrix multiply and string functions,
 * chained so each round's input depends on the previous round's checksum. Only uint32_t arithmetic
 * with defined overflow, so a 32-bit PVH build and a 64-bit Linux build print the same checksum.
 * No library calls: the same file builds freestanding and hosted.
 */
#include "workload.h"

#define BUF_BYTES 4096
#define SORT_COUNT 512
#define MAT_N 24
#define TEXT_BYTES 1024

static uint32_t crc_table[256];
static uint8_t buffer[BUF_BYTES];
static uint32_t sort_data[SORT_COUNT];
static uint32_t mat_a[MAT_N][MAT_N], mat_b[MAT_N][MAT_N], mat_c[MAT_N][MAT_N];
static char text[TEXT_BYTES + 1];
static char scratch[TEXT_BYTES + 1];

static uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), table driven. */
static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t c = 0xffffffffu;
    for (uint32_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void quicksort(uint32_t *a, int lo, int hi)
{
    while (lo < hi) {
        uint32_t pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                uint32_t t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
        }
        /* Recurse into the smaller half, loop on the larger: bounded stack depth. */
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static uint32_t matmul(void)
{
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            uint32_t s = 0;
            for (int k = 0; k < MAT_N; k++)
                s += mat_a[i][k] * mat_b[k][j];
            mat_c[i][j] = s;
        }
    uint32_t h = 0;
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++)
            h = h * 31u + mat_c[i][j];
    return h;
}

static uint32_t w_strlen(const char *s) { uint32_t n = 0; while (s[n]) n++; return n; }

static void w_strcpy(char *d, const char *s) { while ((*d++ = *s++) != 0) { } }

static void w_reverse(char *s, uint32_t n)
{
    for (uint32_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) {
        char t = s[i]; s[i] = s[j]; s[j] = t;
    }
}

static int w_strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return (unsigned char)*a - (unsigned char)*b;
}

/* Counts occurrences of a 3-byte needle, naive search. */
static uint32_t w_count(const char *hay, const char *needle)
{
    uint32_t n = 0, ln = w_strlen(needle);
    for (const char *p = hay; *p; p++) {
        uint32_t k = 0;
        while (k < ln && p[k] == needle[k]) k++;
        if (k == ln) n++;
    }
    return n;
}

static uint32_t strings(uint32_t *rng)
{
    for (uint32_t i = 0; i < TEXT_BYTES; i++)
        text[i] = (char)('a' + xorshift32(rng) % 6u);
    text[TEXT_BYTES] = 0;
    w_strcpy(scratch, text);
    uint32_t n = w_strlen(scratch);
    w_reverse(scratch, n);
    uint32_t h = n;
    h = h * 33u + (uint32_t)(w_strcmp(text, scratch) < 0 ? 1 : (w_strcmp(text, scratch) > 0 ? 2 : 3));
    h = h * 33u + w_count(text, "abc");
    h = h * 33u + w_count(scratch, "fed");
    for (uint32_t i = 0; i < n; i++)           /* to upper case */
        if (scratch[i] >= 'a' && scratch[i] <= 'z')
            scratch[i] = (char)(scratch[i] - 32);
    h = h * 33u + crc32((const uint8_t *)scratch, n);
    return h;
}

uint32_t workload_run(uint32_t iterations)
{
    uint32_t rng = 0x12345678u, sum = 0;
    crc32_init();
    for (uint32_t it = 0; it < iterations; it++) {
        rng ^= sum | 1u;
        for (uint32_t i = 0; i < BUF_BYTES; i++)
            buffer[i] = (uint8_t)xorshift32(&rng);
        sum = sum * 0x01000193u ^ crc32(buffer, BUF_BYTES);

        for (uint32_t i = 0; i < SORT_COUNT; i++)
            sort_data[i] = xorshift32(&rng) % 100000u;
        quicksort(sort_data, 0, SORT_COUNT - 1);
        uint32_t sorted = 1;
        for (uint32_t i = 1; i < SORT_COUNT; i++)
            sorted &= sort_data[i - 1] <= sort_data[i];
        sum = sum * 0x01000193u ^ sort_data[SORT_COUNT / 2] ^ (sorted << 31);

        for (int i = 0; i < MAT_N; i++)
            for (int j = 0; j < MAT_N; j++) {
                mat_a[i][j] = xorshift32(&rng) & 0xffff;
                mat_b[i][j] = xorshift32(&rng) & 0xffff;
            }
        sum = sum * 0x01000193u ^ matmul();

        sum = sum * 0x01000193u ^ strings(&rng);
    }
    return sum;
}
