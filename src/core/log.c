/* The error log (fan_log) and the access log: text or JSON lines, to stderr
 * or to files reopened on demand (SIGUSR1) for log rotation. */
#define _GNU_SOURCE /* dup3() */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "fanout.h"

#define LINE_MAX_BYTES 4096

/* A destination: stderr (path NULL), a file (path set), or off (fd < 0). */
typedef struct log_sink {
    int fd;
    char *path;
} log_sink;

static fan_log_level threshold = FAN_LOG_INFO;
static fan_log_format format = FAN_LOG_TEXT;
static log_sink error_sink = {STDERR_FILENO, NULL};
static log_sink access_sink = {STDERR_FILENO, NULL};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fan_log_set_level(fan_log_level level)
{
    threshold = level;
}

void fan_log_set_format(fan_log_format fmt)
{
    format = fmt;
}

static int open_file(const char *path)
{
    /* O_APPEND: each line's single write lands whole at the end, even with
     * several workers writing to the same file. */
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* Points `s` at stderr ("stderr" or NULL), nowhere ("off", if allowed) or a
 * file; the previous file is closed only once the new one is open. */
static int sink_open(log_sink *s, const char *path, int may_be_off)
{
    int fd = STDERR_FILENO;
    char *copy = NULL;
    if (may_be_off && path && strcmp(path, "off") == 0) {
        fd = -1;
    } else if (path && *path && strcmp(path, "stderr") != 0) {
        copy = strdup(path);
        if (!copy)
            return FAN_ENOMEM;
        fd = open_file(path);
        if (fd < 0) {
            int err = errno;
            free(copy);
            fan_log(FAN_LOG_ERROR, "cannot open log file %s: %s", path, strerror(err));
            return FAN_EIO;
        }
    }
    if (s->path)
        close(s->fd);
    free(s->path);
    s->fd = fd;
    s->path = copy;
    return 0;
}

int fan_log_open(const char *path)
{
    return sink_open(&error_sink, path, 0);
}

int fan_access_log_open(const char *path)
{
    return sink_open(&access_sink, path, 1);
}

/* Opens the file again under its name: after logrotate renamed it, lines go
 * to a new file. dup2() swaps the file under the same descriptor at once, so
 * a thread writing meanwhile never sees it closed. On failure the old file
 * stays in use. */
static int sink_reopen(log_sink *s)
{
    if (!s->path)
        return 0;
    int fd = open_file(s->path);
    if (fd < 0 || dup3(fd, s->fd, O_CLOEXEC) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        fan_log(FAN_LOG_ERROR, "cannot reopen log file %s: %s", s->path, strerror(err));
        return FAN_EIO;
    }
    close(fd);
    return 0;
}

int fan_log_reopen(void)
{
    int a = sink_reopen(&access_sink);
    int e = sink_reopen(&error_sink);
    return e ? e : a;
}

int fan__access_log_on(void)
{
    return access_sink.fd >= 0;
}

/* "2026-11-25T11:28:24.123Z" */
static int format_time(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    return snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    ts.tv_nsec / 1000000);
}

/* Appends `s` to line[*n] as a JSON string's contents (quotes, backslashes
 * and control characters escaped; other bytes as they are), or in text mode
 * with control characters replaced by '?', so that no value can forge a
 * line. Stops `reserve` bytes short of the end, which keeps room for what
 * follows (a JSON line cut in the middle would not parse). */
static void append_value(char *line, size_t *n, size_t cap, const char *s, int json)
{
    const size_t reserve = 200;
    for (; *s && *n + reserve < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!json)
            line[(*n)++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        else if (ch == '"' || ch == '\\')
            *n += (size_t)snprintf(line + *n, cap - *n, "\\%c", ch);
        else if (ch < 0x20)
            *n += (size_t)snprintf(line + *n, cap - *n, "\\u%04x", ch);
        else
            line[(*n)++] = (char)ch;
    }
}

static void append(char *line, size_t *n, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *line, size_t *n, size_t cap, const char *fmt, ...)
{
    if (*n >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (m > 0)
        *n = *n + (size_t)m < cap ? *n + (size_t)m : cap - 1;
}

/* One write per line, so lines of concurrent processes do not interleave. */
static void write_line(int fd, char *line, size_t n, size_t cap)
{
    if (n > cap - 2)
        n = cap - 2;
    line[n++] = '\n';
    ssize_t ignored = write(fd, line, n);
    (void)ignored;
}

static void vlog(fan_log_level level, int also_stderr, const char *fmt, va_list ap)
{
    if (level < threshold)
        return;
    char t[96], msg[LINE_MAX_BYTES / 2], line[LINE_MAX_BYTES];
    format_time(t, sizeof t);
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = 0;
    if (format == FAN_LOG_JSON) {
        append(line, &n, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%ld,\"msg\":\"", t,
               level_names[level], (long)getpid());
        append_value(line, &n, sizeof line, msg, 1);
        append(line, &n, sizeof line, "\"}");
    } else {
        /* The message is text of the caller's, which may carry input (a
         * name, a path): its control bytes are replaced like a value's, so
         * that no message forges a line. */
        append(line, &n, sizeof line, "%s %s [%ld] ", t, level_names[level], (long)getpid());
        append_value(line, &n, sizeof line, msg, 0);
    }
    write_line(error_sink.fd, line, n, sizeof line);
    if (also_stderr && error_sink.path)
        write_line(STDERR_FILENO, line, n, sizeof line);
}

void fan_log(fan_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, 0, fmt, ap);
    va_end(ap);
}

void fan__log_notice(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(FAN_LOG_INFO, 1, fmt, ap);
    va_end(ap);
}

static void access_json(char *line, size_t *n, size_t cap, const char *t,
                        const fan__access_entry *e)
{
    append(line, n, cap, "{\"time\":\"%s\",\"level\":\"access\",\"pid\":%ld,\"client\":", t,
           (long)getpid());
    if (e->client) {
        append(line, n, cap, "\"");
        append_value(line, n, cap, e->client, 1);
        append(line, n, cap, "\"");
    } else {
        append(line, n, cap, "null");
    }
    append(line, n, cap, ",\"method\":\"");
    append_value(line, n, cap, e->method, 1);
    append(line, n, cap, "\",\"path\":\"");
    append_value(line, n, cap, e->path, 1);
    append(line, n, cap,
           "\",\"status\":%d,\"duration_ms\":%.3f,\"bytes\":%zu,\"calls\":%u,\"failed\":%u",
           e->status, e->ms, e->bytes, e->calls, e->failed);
    if (e->trace_id)
        append(line, n, cap, ",\"trace_id\":\"%s\"", e->trace_id);
    append(line, n, cap, "}");
}

void fan__access_log(const fan__access_entry *e)
{
    if (access_sink.fd < 0)
        return;
    char t[96], line[LINE_MAX_BYTES];
    format_time(t, sizeof t);
    size_t n = 0;
    if (format == FAN_LOG_JSON) {
        access_json(line, &n, sizeof line, t, e);
    } else {
        append(line, &n, sizeof line, "%s access [%ld] %s ", t, (long)getpid(),
               e->client ? e->client : "-");
        append_value(line, &n, sizeof line, e->method, 0);
        append(line, &n, sizeof line, " ");
        append_value(line, &n, sizeof line, e->path, 0);
        append(line, &n, sizeof line, " %d %.3f ms %zu B calls=%u failed=%u", e->status, e->ms,
               e->bytes, e->calls, e->failed);
        if (e->trace_id)
            append(line, &n, sizeof line, " trace=%s", e->trace_id);
    }
    write_line(access_sink.fd, line, n, sizeof line);
}

int fan__log_quota_take(fan__log_quota *q, double now, double interval, unsigned long *quiet)
{
    if (q->at && now - q->at < interval) {
        q->quiet++;
        return 0;
    }
    *quiet = q->quiet;
    q->quiet = 0;
    q->at = now;
    return 1;
}
