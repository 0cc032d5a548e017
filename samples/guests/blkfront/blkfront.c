/*
 * blkfront: a PV block frontend in miniature, as Linux's xen-blkfront and GRUB's xendisk do it, over the
 * rings the toolstack set up: the XenStore ring (HVM_PARAM_STORE_PFN/EVTCHN, xen/io/xs_wire.h) for the
 * xenbus handshake (xen/io/xenbus.h), the PV console ring (HVM_PARAM_CONSOLE_PFN/EVTCHN, xen/io/console.h),
 * and a blkif ring (xen/io/blkif.h, the native i386 layout: x86_32-abi) granted to the backend. It writes a
 * pattern on its disk with one 8-segment request, flushes, reads it back with another, checks it, sends a
 * request past the end of the disk (which must fail), and closes the device. Waits poll with SCHEDOP_yield.
 * The host checks the pattern on the image file afterwards: byte i of sector s (from sector 128) is
 * (s * 31 + i * 7 + 1) & 0xff.
 * With `keep-going` on its command line it then repeats the write + read-back of the same pattern round after round
 * (printing every 8th round on both consoles) until sector 64 of its disk starts with "stop" (the host writes it into
 * the image): a test kills and replaces the Dom0 process meanwhile, and the guest must neither notice nor lose a request.
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>
#include <xen/io/protocols.h>

#define xen_mb()  __sync_synchronize()
#define xen_rmb() __sync_synchronize()
#define xen_wmb() __sync_synchronize()
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#define GRANT_TABLE_GPFN 0x80001u        /* 2 GiB: outside RAM, reachable with paging off */
#define RING_GREF        10
#define DATA_GREF        11              /* 11..18: the write pages, 19..26: the read pages */
#define PAGES            8
#define FIRST_SECTOR     128

static volatile grant_entry_v1_t *const gnttab = (volatile grant_entry_v1_t *)(GRANT_TABLE_GPFN << 12);
static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static uint8_t data[2 * PAGES][4096] __attribute__((aligned(4096)));

static long evtchn_op(int cmd, void *arg) { return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg); }
static void yield(void) { HYPERVISOR_sched_op(SCHEDOP_yield, NULL); }
static void notify(evtchn_port_t port) { struct evtchn_send s = { .port = port }; evtchn_op(EVTCHNOP_send, &s); }

static uint64_t get_param(uint32_t index)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    return HYPERVISOR_hvm_op(HVMOP_get_param, &p) ? 0 : p.value;
}

/* ---- XenStore over the store ring ---- */

static volatile struct xenstore_domain_interface *store;
static evtchn_port_t store_port;
static uint32_t req_id;

static void xs_put(const void *p, uint32_t len)
{
    const uint8_t *b = p;
    while (len) {
        XENSTORE_RING_IDX prod = store->req_prod;
        if (prod - store->req_cons >= XENSTORE_RING_SIZE) { notify(store_port); yield(); continue; }
        store->req[MASK_XENSTORE_IDX(prod)] = *b++;
        __sync_synchronize();
        store->req_prod = prod + 1;
        len--;
    }
    notify(store_port);
}

static void xs_get(void *p, uint32_t len)
{
    uint8_t *b = p;
    while (len) {
        XENSTORE_RING_IDX cons = store->rsp_cons;
        if (store->rsp_prod == cons) { notify(store_port); yield(); continue; }
        __sync_synchronize();
        *b++ = store->rsp[MASK_XENSTORE_IDX(cons)];
        __sync_synchronize();
        store->rsp_cons = cons + 1;
        len--;
    }
    notify(store_port);
}

/* One request; the reply payload (NUL-terminated) goes to out. Returns the reply type (XS_ERROR on failure). */
static uint32_t xs_request(uint32_t type, const char *a, const char *b, char *out, uint32_t out_size)
{
    uint32_t la = strlen(a) + 1, lb = b ? strlen(b) : 0;
    struct xsd_sockmsg m = { .type = type, .req_id = ++req_id, .tx_id = 0, .len = la + lb };
    xs_put(&m, sizeof m);
    xs_put(a, la);
    if (b)
        xs_put(b, lb);
    struct xsd_sockmsg r;
    for (;;) {
        xs_get(&r, sizeof r);
        char tmp[XENSTORE_PAYLOAD_MAX + 1];
        uint32_t n = r.len <= XENSTORE_PAYLOAD_MAX ? r.len : XENSTORE_PAYLOAD_MAX;
        xs_get(tmp, n);
        tmp[n] = 0;
        if (r.type == XS_WATCH_EVENT || r.req_id != m.req_id)
            continue; /* not ours */
        if (out) {
            uint32_t c = n < out_size - 1 ? n : out_size - 1;
            memcpy(out, tmp, c);
            out[c] = 0;
        }
        return r.type;
    }
}

static int xs_read(const char *path, char *out, uint32_t size) { return xs_request(XS_READ, path, NULL, out, size) == XS_READ ? 0 : -1; }
static int xs_write(const char *path, const char *value) { return xs_request(XS_WRITE, path, value, NULL, 0) == XS_WRITE ? 0 : -1; }

static void join(char *out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
}

static void utoa(uint32_t v, char *out)
{
    char t[12];
    int n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++)
        out[i] = t[n - 1 - i];
    out[n] = 0;
}

/* Polls a node until it reads `want` (the other end's xenbus state). */
static int wait_state(const char *dir, const char *want)
{
    char path[256], v[16];
    join(path, dir, "state");
    for (int i = 0; i < 200000; i++) {
        if (xs_read(path, v, sizeof v) == 0 && strncmp(v, want, 2) == 0)
            return 0;
        yield();
    }
    return -1;
}

/* ---- the PV console ring ---- */

static void console_ring_print(const char *s)
{
    volatile struct xencons_interface *ring = (volatile struct xencons_interface *)(uintptr_t)(get_param(HVM_PARAM_CONSOLE_PFN) << 12);
    XENCONS_RING_IDX prod = ring->out_prod;
    for (; *s; s++) {
        while (prod - ring->out_cons >= sizeof ring->out)
            yield();
        ring->out[MASK_XENCONS_IDX(prod++, ring->out)] = *s;
    }
    __sync_synchronize();
    ring->out_prod = prod;
    notify((evtchn_port_t)get_param(HVM_PARAM_CONSOLE_EVTCHN));
}

/* ---- blkif ---- */

static blkif_front_ring_t ring;
static evtchn_port_t blk_port;

static void grant(uint32_t ref, const void *page, domid_t backend)
{
    gnttab[ref].domid = backend;
    gnttab[ref].frame = (uint32_t)(uintptr_t)page >> 12;
    __sync_synchronize();
    gnttab[ref].flags = GTF_permit_access;
}

/* Sends one request with `nseg` whole-page segments from data page `first` and returns its status. */
static int16_t transfer(uint8_t op, uint64_t sector, int first, int nseg, uint64_t id)
{
    blkif_request_t *req = RING_GET_REQUEST(&ring, ring.req_prod_pvt);
    req->operation = op;
    req->nr_segments = (uint8_t)nseg;
    req->handle = 0;
    req->id = id;
    req->sector_number = sector;
    for (int i = 0; i < nseg; i++) {
        req->seg[i].gref = DATA_GREF + first + i;
        req->seg[i].first_sect = 0;
        req->seg[i].last_sect = 7;
    }
    ring.req_prod_pvt++;
    int do_notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&ring, do_notify);
    if (do_notify)
        notify(blk_port);
    while (!RING_HAS_UNCONSUMED_RESPONSES(&ring))
        yield();
    blkif_response_t *rsp = RING_GET_RESPONSE(&ring, ring.rsp_cons);
    int16_t status = rsp->id == id ? rsp->status : -100;
    ring.rsp_cons++;
    return status;
}

int guest_main(const char *cmdline)
{
    store = (volatile struct xenstore_domain_interface *)(uintptr_t)(get_param(HVM_PARAM_STORE_PFN) << 12);
    store_port = (evtchn_port_t)get_param(HVM_PARAM_STORE_EVTCHN);
    console_ring_print("blkfront: hello on the console ring\n");

    struct xen_add_to_physmap gx = { .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0, .gpfn = GRANT_TABLE_GPFN };
    print_line("map grant table", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &gx));

    char name[64], list[256], fe[128], be[128], path[256], v[64];
    print_line("read name", xs_read("name", name, sizeof name));
    print("name: "); print(name); print("\n");
    print_line("directory device/vbd", xs_request(XS_DIRECTORY, "device/vbd", NULL, list, sizeof list) == XS_DIRECTORY ? 0 : -1);
    print("vbd: "); print(list); print("\n");
    join(fe, "device/vbd", list);                       /* the first entry: list holds "51712\0..." */
    join(path, fe, "backend");
    print_line("read backend", xs_read(path, be, sizeof be));
    join(path, fe, "backend-id");
    print_line("read backend-id", xs_read(path, v, sizeof v));
    domid_t backend = (domid_t)parse_uint(v, 0xffff);
    print_line("backend InitWait", wait_state(be, "2"));
    join(path, be, "sectors");
    print_line("read sectors", xs_read(path, v, sizeof v));
    print("sectors: "); print(v); print("\n");
    join(path, be, "feature-flush-cache");
    print_line("read feature-flush-cache", xs_read(path, v, sizeof v));

    SHARED_RING_INIT((blkif_sring_t *)ring_page);
    FRONT_RING_INIT(&ring, (blkif_sring_t *)ring_page, 4096);
    grant(RING_GREF, ring_page, backend);
    for (int i = 0; i < 2 * PAGES; i++)
        grant(DATA_GREF + i, data[i], backend);
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = backend };
    print_line("alloc_unbound", evtchn_op(EVTCHNOP_alloc_unbound, &au));
    blk_port = au.port;

    utoa(RING_GREF, v);
    join(path, fe, "ring-ref");
    print_line("write ring-ref", xs_write(path, v));
    utoa(blk_port, v);
    join(path, fe, "event-channel");
    print_line("write event-channel", xs_write(path, v));
    join(path, fe, "protocol");
    print_line("write protocol", xs_write(path, XEN_IO_PROTO_ABI_NATIVE));
    join(path, fe, "state");
    print_line("write state Initialised", xs_write(path, "3"));
    print_line("backend Connected", wait_state(be, "4"));
    print_line("write state Connected", xs_write(path, "4"));

    for (int p = 0; p < PAGES; p++)
        for (int i = 0; i < 4096; i++) {
            uint32_t s = FIRST_SECTOR + p * 8 + i / 512;
            data[p][i] = (uint8_t)(s * 31 + (i % 512) * 7 + 1);
        }
    print_line("write 8 pages", transfer(BLKIF_OP_WRITE, FIRST_SECTOR, 0, PAGES, 1));
    print_line("flush", transfer(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 0, 2));
    memset(data[PAGES], 0, sizeof data[0] * PAGES);
    print_line("read 8 pages", transfer(BLKIF_OP_READ, FIRST_SECTOR, PAGES, PAGES, 3));
    print_line("read back matches", memcmp(data[0], data[PAGES], sizeof data[0] * PAGES) == 0);
    if (cmdline_has(cmdline, "keep-going")) {
        uint32_t round = 0, bad = 0;
        for (;;) {
            if (transfer(BLKIF_OP_WRITE, FIRST_SECTOR, 0, PAGES, 100 + 2 * round) != BLKIF_RSP_OKAY)
                bad++;
            memset(data[PAGES], 0, sizeof data[0] * PAGES);
            if (transfer(BLKIF_OP_READ, FIRST_SECTOR, PAGES, PAGES, 101 + 2 * round) != BLKIF_RSP_OKAY
                || memcmp(data[0], data[PAGES], sizeof data[0] * PAGES) != 0)
                bad++;
            round++;
            if (round % 8 == 0) {
                char n[12];
                utoa(round, n);
                print("round "); print(n); print_line(" bad", bad);
                console_ring_print("blkfront: round ");
                console_ring_print(n);
                console_ring_print("\n");
            }
            if (transfer(BLKIF_OP_READ, 64, PAGES, 1, 99) == BLKIF_RSP_OKAY && memcmp(data[PAGES], "stop", 4) == 0)
                break;
        }
        print_line("rounds bad", bad);
    }

    uint32_t sectors = 0;
    join(path, be, "sectors");
    if (xs_read(path, v, sizeof v) == 0)
        sectors = parse_uint(v, 0);
    print_line("read past the end", transfer(BLKIF_OP_READ, sectors, PAGES, 1, 4));

    join(path, fe, "state");
    print_line("write state Closing", xs_write(path, "5"));
    print_line("backend Closing", wait_state(be, "5"));
    print_line("write state Closed", xs_write(path, "6"));
    print_line("backend Closed", wait_state(be, "6"));
    console_ring_print("blkfront: done\n");
    print("blkfront done\n");
    return SHUTDOWN_poweroff;
}
