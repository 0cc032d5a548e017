/*
 * The integer benchmark: the kinds of work CoreMark measures, written for VmmKit (no CoreMark code).
 *   - list processing: a singly linked list of nodes in a pool, searched, reversed and merge-sorted twice;
 *   - matrix operations on 16-bit elements with 32-bit results: add/multiply by a constant, matrix-vector and
 *     matrix-matrix products, a bit-field extraction;
 *   - a state machine that classifies the comma-separated tokens of a text (integer, decimal, exponent, hexadecimal,
 *     invalid) and counts transitions, then corrupts the text a little for the next pass;
 *   - CRC-16/CCITT (polynomial 0x1021, initial value 0xFFFF) over every result, chained from round to round.
 * Buffers are reset and copied with REP STOS / REP MOVS (a small inline-asm memset/memcpy, as a libc would).
 * Only fixed-width integer arithmetic with defined overflow: the 32-bit guest and a 64-bit Linux build agree.
 */
#include "intbench.h"

#define LIST_NODES 160
#define MAT_N 18
#define TEXT_BYTES 480

/* ------------------------------------------------------------------ helpers */

static void fill32(void *d, uint32_t v, uint32_t words)
{
    __asm__ volatile("rep stosl" : "+D"(d), "+c"(words) : "a"(v) : "memory");
}

static void copy8(void *d, const void *s, uint32_t bytes)
{
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(bytes) : : "memory");
}

static uint16_t crc16_byte(uint8_t b, uint16_t crc)
{
    crc ^= (uint16_t)(b << 8);
    for (int k = 0; k < 8; k++)
        crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    return crc;
}

static uint16_t crc16_u16(uint16_t v, uint16_t crc) { return crc16_byte((uint8_t)(v >> 8), crc16_byte((uint8_t)v, crc)); }

static uint16_t crc16_u32(uint32_t v, uint16_t crc) { return crc16_u16((uint16_t)(v >> 16), crc16_u16((uint16_t)v, crc)); }

/* A 32-bit linear congruential generator (Numerical Recipes constants). */
static uint32_t next_random(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ------------------------------------------------------------------ list processing */

struct node {
    struct node *next;
    int16_t value;
    uint16_t order;
};

static struct node pool[LIST_NODES];

static struct node *list_build(uint32_t seed)
{
    fill32(pool, 0, sizeof pool / 4);
    struct node *head = 0;
    for (uint32_t i = 0; i < LIST_NODES; i++) {
        struct node *n = &pool[(i * 37u) % LIST_NODES]; /* scattered in the pool, as a heap leaves them */
        n->value = (int16_t)(next_random(&seed) & 0x7fff) - 0x3fff;
        n->order = (uint16_t)i;
        n->next = head;
        head = n;
    }
    return head;
}

static struct node *list_reverse(struct node *l)
{
    struct node *r = 0;
    while (l) {
        struct node *n = l->next;
        l->next = r;
        r = l;
        l = n;
    }
    return r;
}

static int by_value(const struct node *a, const struct node *b) { return a->value - b->value; }

static int by_order(const struct node *a, const struct node *b) { return (int)a->order - (int)b->order; }

/* Bottom-up merge sort of a linked list (stable). */
static struct node *list_sort(struct node *l, int (*cmp)(const struct node *, const struct node *))
{
    for (uint32_t width = 1;; width *= 2) {
        struct node *p = l, *tail = 0;
        uint32_t merges = 0;
        l = 0;
        while (p) {
            merges++;
            struct node *q = p;
            uint32_t psize = 0, qsize = width;
            for (uint32_t i = 0; i < width && q; i++) {
                psize++;
                q = q->next;
            }
            while (psize > 0 || (qsize > 0 && q)) {
                struct node *e;
                if (psize == 0) { e = q; q = q->next; qsize--; }
                else if (qsize == 0 || !q || cmp(p, q) <= 0) { e = p; p = p->next; psize--; }
                else { e = q; q = q->next; qsize--; }
                if (tail) tail->next = e; else l = e;
                tail = e;
            }
            p = q;
        }
        tail->next = 0;
        if (merges <= 1)
            return l;
    }
}

static uint16_t list_work(uint32_t seed)
{
    struct node *l = list_build(seed);
    uint16_t crc = 0xffff;
    /* Searches: how far each of 16 values is from the head (or a miss). */
    for (uint32_t k = 0; k < 16; k++) {
        int16_t want = pool[(k * 11u) % LIST_NODES].value;
        if (k & 1) want = (int16_t)(want + 1);
        int32_t pos = 0;
        const struct node *n = l;
        while (n && n->value != want) { n = n->next; pos++; }
        crc = crc16_u16((uint16_t)(n ? pos : -1), crc);
    }
    l = list_reverse(l);
    crc = crc16_u16((uint16_t)l->value, crc);
    l = list_sort(l, by_value);
    int32_t sorted = 1, sum = 0;
    for (const struct node *n = l; n; n = n->next) {
        if (n->next && n->value > n->next->value) sorted = 0;
        sum += n->value * (int32_t)(n->order & 7);
        crc = crc16_u16((uint16_t)n->order, crc);
    }
    crc = crc16_u32((uint32_t)sum, crc16_u16((uint16_t)sorted, crc));
    l = list_sort(l, by_order);
    for (const struct node *n = l; n; n = n->next)
        crc = crc16_u16((uint16_t)n->value, crc);
    return crc;
}

/* ------------------------------------------------------------------ matrices */

static int16_t mat_a[MAT_N][MAT_N], mat_b[MAT_N][MAT_N], mat_keep[MAT_N][MAT_N];
static int32_t mat_c[MAT_N][MAT_N];
static int32_t vec_out[MAT_N];

static uint16_t crc_matrix32(uint16_t crc)
{
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++)
            crc = crc16_u32((uint32_t)mat_c[i][j], crc);
    return crc;
}

static uint16_t matrix_work(uint32_t seed)
{
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            mat_a[i][j] = (int16_t)((next_random(&seed) & 0x1ff) - 0x100);
            mat_b[i][j] = (int16_t)((next_random(&seed) & 0x3ff) - 0x200);
        }
    copy8(mat_keep, mat_a, sizeof mat_a);
    int16_t k = (int16_t)((seed & 0x3f) + 3);
    uint16_t crc = 0xffff;

    for (int i = 0; i < MAT_N; i++)            /* A + k */
        for (int j = 0; j < MAT_N; j++)
            mat_a[i][j] = (int16_t)(mat_a[i][j] + k);
    for (int i = 0; i < MAT_N; i++)            /* C = A * k */
        for (int j = 0; j < MAT_N; j++)
            mat_c[i][j] = (int32_t)mat_a[i][j] * k;
    crc = crc_matrix32(crc);
    for (int i = 0; i < MAT_N; i++) {          /* v = A * B[., 0] */
        int32_t s = 0;
        for (int j = 0; j < MAT_N; j++)
            s += (int32_t)mat_a[i][j] * mat_b[j][0];
        vec_out[i] = s;
        crc = crc16_u32((uint32_t)s, crc);
    }
    for (int i = 0; i < MAT_N; i++)            /* C = A * B */
        for (int j = 0; j < MAT_N; j++) {
            int32_t s = 0;
            for (int m = 0; m < MAT_N; m++)
                s += (int32_t)mat_a[i][m] * mat_b[m][j];
            mat_c[i][j] = s;
        }
    crc = crc_matrix32(crc);
    for (int i = 0; i < MAT_N; i++)            /* C = bits 2..9 of (A * B) + bits 5..8 */
        for (int j = 0; j < MAT_N; j++)
            mat_c[i][j] = ((mat_c[i][j] >> 2) & 0xff) + ((mat_c[i][j] >> 5) & 0xf);
    crc = crc_matrix32(crc);
    copy8(mat_a, mat_keep, sizeof mat_a);      /* A back as it was */
    for (int i = 0; i < MAT_N; i++)
        crc = crc16_u16((uint16_t)mat_a[i][(i * 5) % MAT_N], crc);
    return crc;
}

/* ------------------------------------------------------------------ state machine */

enum state { S_START, S_SIGN, S_INT, S_ZERO, S_HEX, S_DOT, S_FRACTION, S_EXP, S_EXP_SIGN, S_EXPONENT, S_INVALID, S_COUNT };

static char text[TEXT_BYTES + 1];
static uint32_t final_count[S_COUNT], transitions[S_COUNT];

static void text_build(uint32_t seed)
{
    static const char *const samples[] = {
        "5012", "-874", "+122", "0x1f3", "0XAB", "35.54", "-.8", "0.003", "1.6e3", "-7.2E-4", "3e+9",
        "18.", "0x", "1.2.3", "--5", "e4", "7-", "ab", "+", "0",
    };
    uint32_t n = 0;
    while (n < TEXT_BYTES - 8) {
        const char *s = samples[next_random(&seed) % (sizeof samples / sizeof samples[0])];
        while (*s && n < TEXT_BYTES - 1) text[n++] = *s++;
        text[n++] = ',';
    }
    text[n] = 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static enum state step(enum state s, char c)
{
    switch (s) {
    case S_START:
        if (c == '+' || c == '-') return S_SIGN;
        if (c == '0') return S_ZERO;
        if (is_digit(c)) return S_INT;
        if (c == '.') return S_DOT;
        return S_INVALID;
    case S_SIGN:
        if (c == '0') return S_ZERO;
        if (is_digit(c)) return S_INT;
        if (c == '.') return S_DOT;
        return S_INVALID;
    case S_ZERO:
        if (c == 'x' || c == 'X') return S_HEX;
        if (is_digit(c)) return S_INT;
        if (c == '.') return S_FRACTION;
        if (c == 'e' || c == 'E') return S_EXP;
        return S_INVALID;
    case S_INT:
        if (is_digit(c)) return S_INT;
        if (c == '.') return S_FRACTION;
        if (c == 'e' || c == 'E') return S_EXP;
        return S_INVALID;
    case S_HEX:
        return is_hex(c) ? S_HEX : S_INVALID;
    case S_DOT:
        return is_digit(c) ? S_FRACTION : S_INVALID;
    case S_FRACTION:
        if (is_digit(c)) return S_FRACTION;
        if (c == 'e' || c == 'E') return S_EXP;
        return S_INVALID;
    case S_EXP:
        if (c == '+' || c == '-') return S_EXP_SIGN;
        return is_digit(c) ? S_EXPONENT : S_INVALID;
    case S_EXP_SIGN:
    case S_EXPONENT:
        return is_digit(c) ? S_EXPONENT : S_INVALID;
    default:
        return S_INVALID;
    }
}

static uint16_t state_pass(uint16_t crc)
{
    fill32(final_count, 0, S_COUNT);
    fill32(transitions, 0, S_COUNT);
    const char *p = text;
    while (*p) {
        enum state s = S_START;
        while (*p && *p != ',') {
            enum state t = step(s, *p++);
            if (t != s) transitions[t]++;
            s = t;
        }
        final_count[s]++;
        if (*p) p++;
    }
    for (int i = 0; i < S_COUNT; i++)
        crc = crc16_u32(final_count[i] * 65536u + transitions[i], crc);
    return crc;
}

static uint16_t state_work(uint32_t seed)
{
    text_build(seed);
    uint16_t crc = state_pass(0xffff);
    /* Corrupt every 7th character, classify again, then undo it (XOR twice). */
    uint8_t mask = (uint8_t)((seed & 0x1f) | 1);
    for (uint32_t i = 0; text[i]; i += 7) text[i] = (char)(text[i] ^ mask);
    crc = state_pass(crc);
    for (uint32_t i = 0; text[i]; i += 7) text[i] = (char)(text[i] ^ mask);
    return state_pass(crc);
}

/* ------------------------------------------------------------------ the rounds */

void intbench_run(uint32_t iterations, struct intbench_result *r)
{
    uint16_t crc = 0;
    r->list = list_work(0);
    r->matrix = matrix_work(0);
    r->state = state_work(0);
    for (uint32_t it = 0; it < iterations; it++) {
        uint32_t seed = (uint32_t)crc * 0x9e3779b9u + it;
        crc = crc16_u16(list_work(seed), crc);
        crc = crc16_u16(matrix_work(seed ^ 0x5a5a5a5au), crc);
        crc = crc16_u16(state_work(seed + 0x1234u), crc);
    }
    r->crc = crc;
}
