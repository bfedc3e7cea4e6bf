#include "fanout.h"

static const struct {
    int code;
    const char *name;
    const char *text;
} errors[] = {
    {FAN_OK, "ok", "success"},
    {FAN_ENOMEM, "nomem", "out of memory"},
    {FAN_EINVAL, "invalid", "invalid argument"},
    {FAN_ECANCELED, "cancelled", "operation cancelled"},
    {FAN_ETIMEDOUT, "timeout", "timed out"},
    {FAN_ECONNREFUSED, "refused", "connection refused or host unreachable"},
    {FAN_EDNS, "dns", "host name could not be resolved"},
    {FAN_ETLS, "tls", "TLS handshake or certificate failure"},
    {FAN_ETOOLARGE, "too_large", "size limit exceeded"},
    {FAN_EPROTO, "protocol", "HTTP protocol error"},
    {FAN_EIO, "io", "network or system error"},
    {FAN_EADDRINUSE, "addrinuse", "address already in use"},
    {FAN_ESTATE, "state", "operation not valid in this state"},
    {FAN_EBUSY, "busy", "too many upstream calls: no slot free in time"},
    {FAN_EOPEN, "circuit_open", "the upstream's circuit breaker is open"},
};

/* One entry per code, from FAN_OK down to FAN_ELAST. */
_Static_assert(sizeof errors / sizeof errors[0] == 1 - FAN_ELAST,
               "every fan_error code from 0 to FAN_ELAST needs a name and a text");

static int find(int err)
{
    for (unsigned i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == err)
            return (int)i;
    return -1;
}

const char *fan_strerror(int err)
{
    int i = find(err);
    return i < 0 ? "unknown error" : errors[i].text;
}

const char *fan_errname(int err)
{
    int i = find(err);
    return i < 0 ? "unknown" : errors[i].name;
}
