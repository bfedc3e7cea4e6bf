/* The master process of fan_main() --workers N. It opens one listening
 * socket per worker slot, all on the same address with SO_REUSEPORT (the
 * kernel spreads connections among them), forks the workers (each builds its
 * own loop and accepts on its slot's socket), restarts those that die,
 * reloads on SIGHUP (a new generation of workers, then the old one drained)
 * and forwards the stop signals. It never runs a libuv loop: a loop's kernel
 * state (its epoll set, its signal pipe) would be shared with every child.
 *
 * The sockets are the master's, not the workers': closing the last
 * descriptor of a SO_REUSEPORT listener resets the connections in its queue
 * (the kernel routed them to it alone), so a listener that lives only as long
 * as its worker would lose connections at each reload. Here the new worker of
 * a slot accepts on the same socket as the old one, which just stops: no
 * listening socket closes until the master stops, and the connections queued
 * for a worker that died wait for its replacement.
 *
 * Signals stay blocked in the master except inside ppoll(), so a handler
 * only sets a flag that the loop reads right after, and a child is forked
 * with them blocked: none can reach it before it reset the handlers. */
#define _GNU_SOURCE /* ppoll(), pipe2() */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "core/log.h"
#include "server/admin.h"
#include "server/server.h"

#define RESTART_MIN_S 0.5 /* the first delay once workers keep dying quickly */
#define RESTART_MAX_S 30.0
#define QUICK_DEATH_S 1.0 /* a worker that dies sooner after its start died quickly */
#define QUICK_DEATHS 3    /* in a row, before restarts are delayed */
#define KILL_MARGIN_S 5.0 /* beyond its graceful timeout, a stopping worker is killed */

typedef struct worker {
    pid_t pid;
    unsigned gen;
    int slot;
    unsigned lane; /* its lane of the metrics region */
    int ready;     /* it listens */
    int signalled; /* the stop signal sent to it (SIGTERM, SIGQUIT), or 0 */
    double started;
    double kill_at; /* when it gets SIGKILL if still alive; 0 for never */
} worker;

typedef struct master {
    fan_app *app;
    int n;           /* workers per generation */
    int port;        /* the port every worker listens on */
    int *fds;        /* the listening socket of each slot; -1 once closed */
    int listen_fd;   /* in a worker: its slot's socket */
    fan_app *admin;  /* the admin listener's app, or NULL (admin.c) */
    int admin_port;
    int *admin_fds;  /* the admin socket of each slot */
    int admin_fd;    /* in a worker: its slot's admin socket */
    unsigned lane;   /* in a worker: its lane */
    int ready_fd[2]; /* workers write their pid once they listen */
    pid_t pid;
    worker *w;
    size_t nw, cap;
    unsigned gen;      /* the generation serving (or starting, at first) */
    unsigned next_gen; /* a reload's generation while it starts, else 0 */
    unsigned last_gen;
    int announced;     /* the first generation listens */
    int stopping;      /* 0, SIGTERM or SIGQUIT */
    int status;        /* the master's exit status */
    double restart_at; /* missing workers are started from then on */
    double backoff;
    unsigned quick_deaths;
    int is_worker; /* set in a child just after fork */
} master;

static const int watched[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1};
#define NWATCHED (sizeof watched / sizeof watched[0])

static volatile sig_atomic_t caught[NSIG];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int signum)
{
    caught[signum] = 1;
}

static int take(int signum)
{
    int got = caught[signum];
    caught[signum] = 0;
    return got;
}

static void watched_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < NWATCHED; i++)
        sigaddset(set, watched[i]);
}

static void set_handlers(void (*handler)(int))
{
    for (size_t i = 0; i < NWATCHED; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sa.sa_flags = watched[i] == SIGCHLD ? SA_NOCLDSTOP : 0;
        sigaction(watched[i], &sa, NULL);
    }
}

static const char *signal_name(int signum)
{
    switch (signum) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGQUIT:
        return "SIGQUIT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "a signal";
    }
}

/* "exited with status 3", "was killed by signal 9 (Killed)". */
static const char *describe_exit(int st, char *buf, size_t len)
{
    if (WIFEXITED(st))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(st), strsignal(WTERMSIG(st)),
                 WCOREDUMP(st) ? ", core dumped" : "");
    else
        snprintf(buf, len, "ended with wait status %d", st);
    return buf;
}

static void close_sockets(master *m)
{
    if (m->fds)
        fan__close_fds(m->fds, m->n);
    if (m->admin_fds)
        fan__close_fds(m->admin_fds, m->n);
}

/* One socket per slot, opened before any worker starts: a port taken by a
 * socket without SO_REUSEPORT (or of another user) fails here, and port 0
 * is resolved once. */
static int open_sockets(master *m)
{
    m->fds = malloc((size_t)m->n * sizeof *m->fds);
    if (!m->fds) {
        fan_log(FAN_LOG_ERROR, "cannot start the master: out of memory");
        return FAN_ENOMEM;
    }
    m->port = m->app->site.port;
    int rc = fan__reuseport_listen(m->app->site.host, &m->port, m->n, m->fds);
    if (rc != 0 || !m->admin)
        return rc;
    m->admin_fds = malloc((size_t)m->n * sizeof *m->admin_fds);
    if (!m->admin_fds) {
        fan_log(FAN_LOG_ERROR, "cannot start the master: out of memory");
        rc = FAN_ENOMEM;
    } else {
        m->admin_port = fan__site_of(m->admin)->port;
        rc = fan__reuseport_listen(fan__site_of(m->admin)->host, &m->admin_port, m->n,
                                   m->admin_fds);
    }
    if (rc != 0) {
        fan__close_fds(m->fds, m->n);
        free(m->admin_fds);
        m->admin_fds = NULL;
    }
    return rc;
}

/* Workers of generation `gen` that were not asked to stop; only the ready
 * ones if `ready`. */
static int count(const master *m, unsigned gen, int ready)
{
    int n = 0;
    for (size_t i = 0; i < m->nw; i++)
        if (m->w[i].gen == gen && !m->w[i].signalled && (!ready || m->w[i].ready))
            n++;
    return n;
}

/* Sends a stop signal, and arms the deadline after which the worker is
 * killed: its own graceful timeout ends its requests first. */
static void signal_worker(master *m, worker *w, int sig)
{
    if (w->signalled == sig || w->signalled == SIGQUIT)
        return;
    kill(w->pid, sig);
    w->signalled = sig;
    double grace = sig == SIGQUIT ? 0 : fan__graceful_ms(m->app) / 1000.0;
    double at = now() + grace + KILL_MARGIN_S;
    if (!w->kill_at || at < w->kill_at)
        w->kill_at = at;
}

static void signal_generation(master *m, unsigned gen, int sig)
{
    for (size_t i = 0; i < m->nw; i++)
        if (m->w[i].gen == gen)
            signal_worker(m, &m->w[i], sig);
}

static void stop_all(master *m, int sig)
{
    /* The workers' descriptors become the last ones: their listeners really
     * close when they stop accepting. */
    close_sockets(m);
    m->stopping = sig;
    for (size_t i = 0; i < m->nw; i++)
        signal_worker(m, &m->w[i], sig);
}

/* In the child after fork: keeps its slot's socket, drops the rest of the
 * master's state and its signal handlers. SIGTERM, SIGINT and SIGQUIT stay
 * blocked until fan_run() watches them. */
static void become_worker(master *m, int slot)
{
    m->is_worker = 1;
    set_handlers(SIG_DFL);
    signal(SIGHUP, SIG_IGN); /* reloading is the master's business */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
#ifdef __linux__
    /* A worker whose master died stops gracefully rather than hold the port. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->pid)
        raise(SIGTERM);
#endif
    close(m->ready_fd[0]);
    m->listen_fd = m->fds[slot];
    m->fds[slot] = -1;
    if (m->admin_fds) {
        m->admin_fd = m->admin_fds[slot];
        m->admin_fds[slot] = -1;
    }
    close_sockets(m);
    free(m->fds);
    m->fds = NULL;
    free(m->admin_fds);
    m->admin_fds = NULL;
    free(m->w);
    m->w = NULL;
    m->nw = m->cap = 0;
}

/* Forks the worker of generation `gen` for `slot`. Returns 0 in both
 * processes (the child has m->is_worker set) or -1 when fork failed. */
static int spawn(master *m, unsigned gen, int slot)
{
    if (m->nw == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        worker *w = realloc(m->w, cap * sizeof *w);
        if (!w) {
            fan_log(FAN_LOG_ERROR, "cannot start a worker: out of memory");
            return -1;
        }
        m->w = w;
        m->cap = cap;
    }
    fflush(stdout); /* or the child would write what is buffered again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fan_log(FAN_LOG_ERROR, "cannot start a worker: fork: %s", strerror(errno));
        return -1;
    }
    /* Two generations of a slot run at once during a reload: they get
     * lanes of their own; a restarted worker goes on with its lane. */
    unsigned lane = (unsigned)slot + (unsigned)m->n * (gen & 1);
    if (pid == 0) {
        m->lane = lane;
        become_worker(m, slot);
        return 0;
    }
    worker *w = &m->w[m->nw++];
    memset(w, 0, sizeof *w);
    w->pid = pid;
    w->gen = gen;
    w->slot = slot;
    w->lane = lane;
    w->started = now();
    return 0;
}

/* Whether generation `gen` has a worker in `slot` that was not asked to stop. */
static int slot_taken(const master *m, unsigned gen, int slot)
{
    for (size_t i = 0; i < m->nw; i++)
        if (m->w[i].gen == gen && m->w[i].slot == slot && !m->w[i].signalled)
            return 1;
    return 0;
}

/* Starts the workers generation `gen` misses. Returns 0 or -1. */
static int fill_generation(master *m, unsigned gen)
{
    for (int slot = 0; slot < m->n; slot++) {
        if (slot_taken(m, gen, slot))
            continue;
        if (spawn(m, gen, slot) != 0)
            return -1;
        if (m->is_worker)
            return 0;
    }
    return 0;
}

static void reload(master *m)
{
    if (m->stopping)
        return;
    if (!m->announced || m->next_gen) {
        fan_log(FAN_LOG_WARN, "received SIGHUP: ignored, workers are still starting");
        return;
    }
    fan_log(FAN_LOG_INFO, "received SIGHUP: reloading");
    if (m->app->reload) {
        int rc = m->app->reload(m->app, m->app->reload_arg);
        if (rc != 0) {
            fan_log(FAN_LOG_ERROR,
                    "reload failed: the reload hook returned %d; the %d workers of generation %u "
                    "go on serving",
                    rc, count(m, m->gen, 0), m->gen);
            return;
        }
    }
    /* The new generation forks with the certificate loaded again, or with
     * the one before if the files are broken (logged): a reload for other
     * reasons must not fail because of it. */
    fan__tls_reload(m->app);
    m->next_gen = ++m->last_gen;
    if (fill_generation(m, m->next_gen) != 0) {
        fan_log(FAN_LOG_ERROR, "reload failed: generation %u goes on serving", m->gen);
        signal_generation(m, m->next_gen, SIGTERM);
        m->next_gen = 0;
    }
}

/* A worker said it listens: the first generation is announced once all of
 * it listens, and a reload completes once all of the new one does. */
static void worker_ready(master *m, pid_t pid)
{
    for (size_t i = 0; i < m->nw; i++)
        if (m->w[i].pid == pid)
            m->w[i].ready = 1;
    if (!m->announced && count(m, m->gen, 1) == m->n) {
        m->announced = 1;
        fan__log_notice("listening on %s://%s:%d with %d workers",
                        fan__tls_enabled(m->app) ? "https" : "http", m->app->site.host, m->port,
                        m->n);
        if (m->admin)
            fan__log_notice("admin listener on http://%s:%d (/metrics, /waterfall)",
                            fan__site_of(m->admin)->host, m->admin_port);
    }
    if (m->next_gen && count(m, m->next_gen, 1) == m->n) {
        unsigned old = m->gen;
        m->gen = m->next_gen;
        m->next_gen = 0;
        for (size_t i = 0; i < m->nw; i++)
            if (m->w[i].gen != m->gen)
                signal_worker(m, &m->w[i], SIGTERM);
        fan_log(FAN_LOG_INFO,
                "reloaded: generation %u serves with %d workers; generation %u finishes its "
                "requests",
                m->gen, m->n, old);
    }
}

static void read_ready(master *m)
{
    pid_t pids[64];
    ssize_t n;
    while ((n = read(m->ready_fd[0], pids, sizeof pids)) > 0)
        for (size_t i = 0; i < (size_t)n / sizeof pids[0]; i++)
            worker_ready(m, pids[i]);
}

/* A worker nobody asked to stop died: restart it, at once unless workers
 * keep dying quickly. */
static void schedule_restart(master *m, const worker *w, const char *why)
{
    double t = now();
    if (t - w->started < QUICK_DEATH_S) {
        m->quick_deaths++;
    } else {
        m->quick_deaths = 0;
        m->backoff = 0;
    }
    if (m->quick_deaths >= QUICK_DEATHS)
        m->backoff = m->backoff ? m->backoff * 2 : RESTART_MIN_S;
    if (m->backoff > RESTART_MAX_S)
        m->backoff = RESTART_MAX_S;
    if (m->restart_at < t + m->backoff)
        m->restart_at = t + m->backoff;
    if (m->backoff)
        fan_log(FAN_LOG_WARN, "worker %ld %s; restarting it in %.1f s (workers keep dying quickly)",
                (long)w->pid, why, m->backoff);
    else
        fan_log(FAN_LOG_WARN, "worker %ld %s; restarting it", (long)w->pid, why);
}

static void worker_exited(master *m, const worker *w, int st)
{
    char why[96];
    describe_exit(st, why, sizeof why);
    int clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    int restart = !(w->signalled || m->stopping) && m->announced && w->gen != m->next_gen;
    if (fan__admin_region())
        fan__metrics_lane_died(fan__admin_region(), w->lane, restart);
    if (w->signalled || m->stopping) {
        fan_log(clean ? FAN_LOG_INFO : FAN_LOG_WARN, "worker %ld (generation %u) stopped: it %s",
                (long)w->pid, w->gen, why);
        if (!clean && m->stopping)
            m->status = 1;
    } else if (!m->announced) {
        fan_log(FAN_LOG_ERROR,
                "worker %ld %s before every worker listened: the server cannot start", (long)w->pid,
                why);
        m->status = 1;
        stop_all(m, SIGTERM);
    } else if (w->gen == m->next_gen) {
        fan_log(FAN_LOG_ERROR,
                "reload failed: new worker %ld %s before its generation listened; generation %u "
                "goes on serving",
                (long)w->pid, why, m->gen);
        signal_generation(m, m->next_gen, SIGTERM);
        m->next_gen = 0;
    } else {
        schedule_restart(m, w, why);
    }
}

static void reap(master *m)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < m->nw; i++) {
            if (m->w[i].pid != pid)
                continue;
            worker w = m->w[i];
            m->w[i] = m->w[--m->nw];
            worker_exited(m, &w, st);
            break;
        }
    }
}

static void kill_overdue(master *m)
{
    double t = now();
    for (size_t i = 0; i < m->nw; i++) {
        worker *w = &m->w[i];
        if (!w->kill_at || t < w->kill_at)
            continue;
        fan_log(FAN_LOG_WARN, "worker %ld did not stop in time: killing it", (long)w->pid);
        kill(w->pid, SIGKILL);
        w->kill_at = 0;
        if (m->stopping)
            m->status = 1;
    }
}

static void handle_signals(master *m)
{
    int quit = take(SIGQUIT), term = take(SIGTERM), intr = take(SIGINT);
    take(SIGCHLD); /* every turn reaps */
    if (quit && m->stopping != SIGQUIT) {
        fan_log(FAN_LOG_INFO, "received SIGQUIT: stopping the workers at once");
        stop_all(m, SIGQUIT);
    } else if ((term || intr) && !m->stopping) {
        fan_log(FAN_LOG_INFO, "received %s: stopping the workers gracefully",
                signal_name(term ? SIGTERM : SIGINT));
        stop_all(m, SIGTERM);
    } else if (term || intr) {
        fan_log(FAN_LOG_INFO, "received %s: already stopping (SIGQUIT stops at once)",
                signal_name(term ? SIGTERM : SIGINT));
    }
    if (take(SIGHUP))
        reload(m);
    if (take(SIGUSR1)) { /* log rotation: the workers write to the files too */
        fan_log_reopen();
        fan_log(FAN_LOG_INFO, "received SIGUSR1: log files reopened, forwarding to the workers");
        for (size_t i = 0; i < m->nw; i++)
            kill(m->w[i].pid, SIGUSR1);
    }
}

/* How long ppoll() may wait: until the next restart or the next kill. */
static struct timespec *wait_time(const master *m, struct timespec *ts)
{
    double until = DBL_MAX;
    if (!m->stopping && m->announced && count(m, m->gen, 0) < m->n)
        until = m->restart_at;
    for (size_t i = 0; i < m->nw; i++)
        if (m->w[i].kill_at && m->w[i].kill_at < until)
            until = m->w[i].kill_at;
    if (until == DBL_MAX)
        return NULL;
    double d = until - now();
    if (d < 0)
        d = 0;
    ts->tv_sec = (time_t)d;
    ts->tv_nsec = (long)((d - (double)ts->tv_sec) * 1e9);
    return ts;
}

static void master_loop(master *m, const sigset_t *orig)
{
    sigset_t waiting = *orig; /* the signals are delivered only while waiting */
    for (size_t i = 0; i < NWATCHED; i++)
        sigdelset(&waiting, watched[i]);
    while (!m->is_worker && !(m->stopping && m->nw == 0)) {
        struct timespec ts;
        struct pollfd p = {.fd = m->ready_fd[0], .events = POLLIN};
        if (ppoll(&p, 1, wait_time(m, &ts), &waiting) > 0)
            read_ready(m);
        handle_signals(m);
        if (m->is_worker)
            break;
        reap(m);
        kill_overdue(m);
        if (!m->stopping && m->announced && now() >= m->restart_at &&
            fill_generation(m, m->gen) != 0)
            m->restart_at = now() + 1; /* fork failed: try again later */
    }
}

/* In a worker: listens on its slot's socket, tells the master, and runs the
 * loop. */
static int worker_main(master *m)
{
    fan_app *app = m->app;
    /* A loop created in the master before fork (fan__srv() called while the
     * app was built) shares its epoll set with the master: renew it. */
    if (fan__loop_exists())
        uv_loop_fork(fan__loop());
    if (m->admin)
        fan__metrics_attach(fan__admin_region(), m->lane);
    if (fan__listen_fd(app, m->listen_fd) != 0 ||
        (m->admin && fan__listen_fd(m->admin, m->admin_fd) != 0)) {
        close(m->ready_fd[1]);
        return 1;
    }
    pid_t pid = getpid();
    ssize_t ignored = write(m->ready_fd[1], &pid, sizeof pid);
    (void)ignored;
    close(m->ready_fd[1]);
    fan_log(FAN_LOG_DEBUG, "worker listening on port %d", m->port);
    /* fan_run() returns with the stop signals blocked: the master's, which
     * may come late, stays pending and the worker exits as planned. */
    return fan_run() == 0 ? 0 : 1;
}

static int master_setup(master *m)
{
    if (fan__loop_exists() && !fan__list_empty(&fan__srv()->listeners)) {
        fan_log(FAN_LOG_ERROR, "--workers: fan_main() must come before any fan_app_listen_on() "
                               "(or use --workers 0)");
        return -1;
    }
    if (open_sockets(m) != 0)
        return -1;
    if (pipe2(m->ready_fd, O_CLOEXEC) != 0 || fcntl(m->ready_fd[0], F_SETFL, O_NONBLOCK) != 0) {
        fan_log(FAN_LOG_ERROR, "cannot start the master: pipe: %s", strerror(errno));
        close_sockets(m);
        return -1;
    }
    return 0;
}

int fan__serve_workers(fan_app *app, fan_app *admin, int workers)
{
    master m = {.app = app, .admin = admin, .n = workers, .listen_fd = -1, .admin_fd = -1,
                .pid = getpid()};
    if (master_setup(&m) != 0) {
        free(m.fds);
        free(m.admin_fds);
        return 1;
    }
    sigset_t set, orig;
    watched_set(&set);
    sigprocmask(SIG_BLOCK, &set, &orig);
    set_handlers(on_signal);
    fan_log(FAN_LOG_INFO, "master starting %d workers on port %d", workers, m.port);
    m.gen = m.last_gen = 1;
    if (fill_generation(&m, m.gen) != 0) {
        m.status = 1;
        stop_all(&m, SIGTERM);
    }
    if (!m.is_worker)
        master_loop(&m, &orig);
    if (m.is_worker)
        return worker_main(&m);
    /* The stop, reload and log signals stay blocked: one more while the
     * program ends (its cleanup after fan_main(), the demo stopping its
     * mock) stays pending and harmless instead of killing it with their
     * default action. They were blocked since ppoll() returned, and this
     * one call keeps them so while it unblocks the others: one that came
     * meanwhile is never delivered after its handler became the default. */
    sigset_t ending = orig;
    for (size_t i = 0; i < NWATCHED; i++)
        if (watched[i] != SIGCHLD)
            sigaddset(&ending, watched[i]);
    sigprocmask(SIG_SETMASK, &ending, NULL);
    set_handlers(SIG_DFL);
    close_sockets(&m);
    close(m.ready_fd[0]);
    close(m.ready_fd[1]);
    free(m.fds);
    free(m.admin_fds);
    free(m.w);
    fan_log(FAN_LOG_INFO, "master stopped");
    return m.status;
}
