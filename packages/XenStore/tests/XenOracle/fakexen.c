/*
 * fakexen.c - an LD_PRELOAD "fake Xen" that lets Xen's own xenstored (4.17) run without a hypervisor,
 * so the VmmKit.XenStore tests can use it as a differential oracle.
 *
 * Everything lives in the directory named by FAKEXEN_DIR:
 *   domains      domids the test declares alive, whitespace separated (dom0 always is); re-read on
 *                every xc_domain_getinfo, so xenstored's domain checks (domain.c get_domain_info) see
 *                the test's view.
 *   evtchn-in    FIFO: the test writes 4-byte ports; it is the fd xenstored polls (xenevtchn_fd) and
 *                xenevtchn_pending reads one port from it. Any port wakes xenstored, which then scans
 *                every domain ring; the VIRQ_DOM_EXC port (file virq-port) makes it check the domains.
 *   evtchn-out   FIFO: xenevtchn_notify writes the 4-byte local port here (non-blocking, dropped if full).
 *   ring-<domid> the 4096-byte struct xenstore_domain_interface page: xengnttab_map_grant_ref maps it
 *                MAP_SHARED, the test maps the same file and plays the guest.
 *   port-<domid> written by xenevtchn_bind_interdomain: the local port bound for that domain.
 *   xsd_port     dom0's xenbus port (xenstored_linux.c reads /proc/xen/xsd_port); ring-0 is dom0's page
 *                (/proc/xen/xsd_kva). Both are redirected here by the open() wrapper.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#define PAGE 4096
#define DOM0_XENBUS_PORT 1

struct xenevtchn_handle { int in_fd; int out_fd; };
struct xengnttab_handle { int unused; };
struct xc_interface_core { int unused; };

static evtchn_port_t next_port = DOM0_XENBUS_PORT + 1;

static const char *dir(void)
{
    const char *d = getenv("FAKEXEN_DIR");
    if (!d) {
        fprintf(stderr, "fakexen: FAKEXEN_DIR is not set\n");
        abort();
    }
    return d;
}

static void in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir(), name);
}

static void write_number_file(const char *name, unsigned long value)
{
    char path[4096], tmp[4200], text[32];
    in_dir(path, sizeof(path), name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    snprintf(text, sizeof(text), "%lu\n", value);
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static int open_fifo(const char *name)
{
    char path[4096];
    in_dir(path, sizeof(path), name);
    if (mkfifo(path, 0600) == -1 && errno != EEXIST)
        return -1;
    /* O_RDWR: never blocks on open, never sees EOF or ENXIO when the test's end is closed. */
    return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

/* ---- libxenctrl ---- */

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return calloc(1, sizeof(struct xc_interface_core));
}

int xc_interface_close(xc_interface *xch)
{
    free(xch);
    return 0;
}

/* Reads the live domids (dom0 included) into alive[] as a membership bitmap. */
static void read_domains(unsigned char *alive)
{
    memset(alive, 0, DOMID_FIRST_RESERVED);
    alive[0] = 1;
    char path[4096];
    in_dir(path, sizeof(path), "domains");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    unsigned long d;
    while (fscanf(f, "%lu", &d) == 1)
        if (d < DOMID_FIRST_RESERVED)
            alive[d] = 1;
    fclose(f);
}

/* The first max_doms live domains with domid >= first_domid, as the hypercall returns them. */
int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms, xc_dominfo_t *info)
{
    (void)xch;
    static unsigned char alive[DOMID_FIRST_RESERVED];
    read_domains(alive);
    unsigned int n = 0;
    for (uint32_t d = first_domid; d < DOMID_FIRST_RESERVED && n < max_doms; d++) {
        if (!alive[d])
            continue;
        memset(&info[n], 0, sizeof(info[n]));
        info[n].domid = d;
        info[n].running = 1;
        n++;
    }
    return (int)n;
}

/* ---- libxenevtchn ---- */

static xenevtchn_handle *new_evtchn(int in_fd)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->in_fd = in_fd >= 0 ? in_fd : open_fifo("evtchn-in");
    h->out_fd = open_fifo("evtchn-out");
    if (h->in_fd < 0 || h->out_fd < 0) {
        free(h);
        return NULL;
    }
    return h;
}

xenevtchn_handle *xenevtchn_open(xentoollog_logger *logger, unsigned int flags)
{
    (void)logger; (void)flags;
    return new_evtchn(-1);
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned int flags)
{
    (void)logger; (void)flags;
    return new_evtchn(fd);
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce) {
        close(xce->in_fd);
        close(xce->out_fd);
        free(xce);
    }
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->in_fd;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    uint32_t p = port;
    if (write(xce->out_fd, &p, sizeof(p)) != sizeof(p)) {
        /* A full FIFO means the test is behind; it rescans the rings on the next notification anyway. */
    }
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    (void)xce; (void)virq;
    evtchn_port_t p = next_port++;
    write_number_file("virq-port", p);
    return p;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid, evtchn_port_t remote_port)
{
    (void)xce; (void)remote_port;
    evtchn_port_t p = next_port++;
    char name[64];
    snprintf(name, sizeof(name), "port-%u", domid);
    write_number_file(name, p);
    return p;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint32_t p;
    ssize_t n = read(xce->in_fd, &p, sizeof(p));
    if (n != sizeof(p)) {
        if (n >= 0)
            errno = EAGAIN;
        return -1;
    }
    return p;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

/* ---- libxengnttab ---- */

xengnttab_handle *xengnttab_open(xentoollog_logger *logger, unsigned int open_flags)
{
    (void)logger; (void)open_flags;
    return calloc(1, sizeof(struct xengnttab_handle));
}

int xengnttab_close(xengnttab_handle *xgt)
{
    free(xgt);
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt; (void)nr_grants;
    return 0;
}

static void *map_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd == -1)
        return NULL;
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        errno = e;
        return NULL;
    }
    return p;
}

/* Only the xenstore ring's reserved grant (GNTTAB_RESERVED_XENSTORE) exists: ring-<domid>. */
void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot)
{
    (void)xgt; (void)prot;
    if (ref != 1) {
        errno = EINVAL;
        return NULL;
    }
    char path[4096], name[64];
    snprintf(name, sizeof(name), "ring-%u", domid);
    in_dir(path, sizeof(path), name);
    return map_file(path);
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * PAGE);
}

/* ---- /proc/xen for dom0 (xenstored_linux.c xenbus_evtchn, xenbus_map) ---- */

static void ensure_dom0_files(void)
{
    char path[4096];
    in_dir(path, sizeof(path), "xsd_port");
    if (access(path, F_OK) != 0)
        write_number_file("xsd_port", DOM0_XENBUS_PORT);
    in_dir(path, sizeof(path), "ring-0");
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int fd = real_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (ftruncate(fd, PAGE) != 0) {
        }
        close(fd);
    }
}

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    if (!real_open)
        real_open = dlsym(RTLD_NEXT, "open");
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char redirected[4096];
    if (strncmp(path, "/proc/xen/", 10) == 0) {
        ensure_dom0_files();
        if (strcmp(path, "/proc/xen/xsd_port") == 0)
            in_dir(redirected, sizeof(redirected), "xsd_port");
        else if (strcmp(path, "/proc/xen/xsd_kva") == 0)
            in_dir(redirected, sizeof(redirected), "ring-0");
        else {
            errno = ENOENT;
            return -1;
        }
        path = redirected;
    }
    return real_open(path, flags, mode);
}
