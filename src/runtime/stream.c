/* Writing to a stream without a round trip through the event loop when the
 * socket can take the bytes at once. */
#include "runtime/runtime.h"

int fan__stream_try(uv_stream_t *s, uv_buf_t *bufs, unsigned nbufs, unsigned *rest)
{
    /* libuv 1.44 re-arms the socket's epoll registration after every
     * uv_write (one epoll_ctl per response, measured); a successful
     * uv_try_write costs just the writev. */
    int n = uv_try_write(s, bufs, nbufs);
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t done = n > 0 ? (size_t)n : 0;
    unsigned i = 0;
    while (i < nbufs && done >= bufs[i].len) {
        done -= bufs[i].len;
        i++;
    }
    if (i == nbufs)
        return 1;
    bufs[i].base += done;
    bufs[i].len -= done;
    *rest = i;
    return 0;
}

int fan__stream_write(uv_stream_t *s, uv_write_t *w, uv_buf_t *bufs, unsigned nbufs,
                      uv_write_cb cb)
{
    unsigned i;
    int rc = fan__stream_try(s, bufs, nbufs, &i);
    if (rc != 0)
        return rc;
    rc = uv_write(w, s, bufs + i, nbufs - i, cb);
    return rc < 0 ? rc : 0;
}
