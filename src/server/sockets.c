/* The listening sockets of a master's workers: several on one address, with
 * SO_REUSEPORT so that the kernel spreads connections among them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server.h"

/* host:port as a socket address. Returns its length, or 0 for a host that is
 * not a numeric IPv4 or IPv6 address. */
static socklen_t make_address(const char *host, int port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof *a6;
    }
    return 0;
}

/* One listening socket on host:*port; sets *port when it was 0. Returns the
 * descriptor, or -1 with errno set. */
static int open_one(const char *host, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = make_address(host, *port, &ss);
    if (!len) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1, off = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        (ss.ss_family == AF_INET6 && /* dual-stack, as libuv binds */
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, FAN__LISTEN_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int fan__reuseport_listen(const char *host, int *port, int n, int *fds)
{
    int asked = *port;
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n; i++) {
        fds[i] = open_one(host, port); /* the first resolves port 0 for the others */
        if (fds[i] >= 0)
            continue;
        int e = errno;
        fan_log(FAN_LOG_ERROR, "cannot listen on %s:%d: %s", host, asked,
                e == EINVAL && i == 0 ? "not a numeric IPv4 or IPv6 address" : strerror(e));
        fan__close_fds(fds, n);
        return e == EADDRINUSE ? FAN_EADDRINUSE : e == EINVAL ? FAN_EINVAL : FAN_EIO;
    }
    return 0;
}

void fan__close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}
