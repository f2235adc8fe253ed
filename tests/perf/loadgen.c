/*
 * loadgen: the perf runner's compiled load generator (tests/perf/run.py builds it).
 *
 * Why it exists: a throughput ratio between two servers means something only when
 * both servers, not the load generator, are the limit. `python -m gchat.bench`
 * cannot read 4 million deliveries a second on one core; this can, on one thread
 * with one epoll, in the spirit of redis-benchmark. It speaks gchat's line protocol,
 * Redis pub/sub (RESP) and IRC, so the same instrument drives every server.
 *
 * Same lines and checks as gchat.bench (gchat/bench/message.py):
 * `~gb~TOKEN SENDER SEQ SENT_NS ....` padded to --size bytes (LF included; Redis
 * publishes it without the LF). Every receiver counts deliveries (occurrences of
 * `~gb~TOKEN `, a carry across reads so none is split or counted twice); --sample
 * receivers, spread evenly over the join order, parse every line: per-sender sequence
 * (loss, duplicate, reorder), length, fields, and, for lines sent inside the measured
 * interval, the send-to-receive latency. A sender may have --window lines in flight: a line is in flight until the
 * probe (a sampled receiver that is no sender) has seen it.
 *
 * Modes: throughput (senders flat out, within the window) and latency (--rate lines/s
 * in all, evenly spaced over the senders, paced by a timerfd, every line stamped when it
 * is written). After the measured interval the senders stop and every receiver must receive
 * every line (bounded by --timeout) or the run reports loss. fanout (--clients idle receivers,
 * then --messages lines from one sender, each sent once the last reached everyone: time to reach
 * all, and the server's RSS per connection) and capacity (--senders, 4 by default, one line in
 * flight each, into a room grown by --step up to --max-clients until a step's p95 reach-all time
 * passes 500 ms) are gchat.bench's (gchat/bench/modes.py); there senders are connections of their
 * own (room members, or Redis publishers), a line counts per sender (its `~gb~TOKEN S ` needle)
 * towards when it reached every receiver, and the generator's CPU share is taken over the timed
 * rounds, where it could delay a reach time. Output: one JSON object on stdout,
 * shaped like gchat.bench's --json for each mode (mode, ok, errors, failures,
 * checks, generator, results), so the runner reads both with one parser.
 *
 * Connecting: --batch clients at a time, each ready at its first line (the welcome), or with
 * --join (send `/join ROOM`) or --await-room (a cluster node's status line) at the first line
 * naming --room; Redis subscribers at their SUBSCRIBE confirmation, publishers being extra
 * connections; IRC clients (--proto irc) register as benchN, JOIN --room and are ready at the
 * server's echo of their JOIN, senders PRIVMSG the room, and every client answers PINGs (searched
 * for only between relayed lines, so the count stays one pass over each read). --port and --pid
 * take lists: clients go round-robin over the ports, and the server's CPU share is the sum over
 * the pids (/proc/PID/stat) during the measured interval.
 *
 * WebSocket (--proto ws, gchat's web page protocol on --web-port): each client upgrades `GET /ws` (with
 * the Origin of the page itself) and is ready at the room's `arrived` event; senders send masked `say`
 * requests carrying the line as their text; pings are answered. Every read is de-framed (frames a read
 * cut wait in ws_in) into the lines a line client would have read, `<nick> TEXT`, one per `message`
 * event (other events skipped), so the counting and checks above run unchanged on them. The page's
 * style echoes a sender's own lines: run it with --echo (senders expect their own lines), as gchat.bench.
 *
 * Build: cc -O2 -o loadgen loadgen.c   (Linux: epoll, timerfd)
 * Usage: loadgen throughput|latency|fanout|capacity --port P [--pid PID] [--proto redis|irc|ws]
 *        [--clients N] [--senders S] [--rate R] [--size B] [--duration S] [--warmup S] [--timeout S]
 *        [--messages M] [--step N] [--max-clients N] (see main)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif

#define MAX_PIDS 16
#define MAX_PORTS 16
#define MAX_SENDERS 1024
#define RECV_SIZE (256 * 1024)
#define MARKER "~gb~"
#define TOKEN_LEN 8
#define NEEDLE_LEN (4 + TOKEN_LEN + 1) /* MARKER, the token, a space */
#define MAX_REACH 10 /* fanout, capacity: senders, each one digit in its lines (gchat.bench's limit) */
#define CAPACITY_LIMIT_MS 500.0
#define SUB_BITS 7 /* histogram: 128 sub-buckets per power of two, < 1% error */
#define HIST_SIZE (64 << SUB_BITS)

enum proto { LINE, REDIS, IRC, WS };
enum role { RECEIVER, SENDER, PUBLISHER };

struct conn {
    int fd;
    int role;      /* RECEIVER, SENDER (line: sends and receives), PUBLISHER (redis: sends only) */
    int sender;    /* sender id, or -1 */
    int sampled;
    int ready;     /* welcome (and join reply) seen, or SUBSCRIBE confirmed */
    int closed;
    int want_out;  /* EPOLLOUT armed */
    uint64_t delivered;
    uint64_t delivered_measured;
    char carry[32];
    int carry_len;
    char *pending; /* sampled: a partial line */
    size_t pending_len, pending_cap;
    uint64_t *next_seq; /* sampled: per sender, the next sequence number expected */
    char nick[48];      /* IRC: benchN, with a _ per nick the server said was taken */
    int welcomed;       /* IRC: 001 seen, JOIN sent */
    char ping[160];     /* IRC: the parameters of a PING line a read boundary cut */
    int ping_len, in_ping;
    char *out;     /* unsent bytes of the current batch */
    size_t out_len, out_off, out_cap;
    char *ws_in;   /* WS: the HTTP response, then a frame, that a read cut */
    size_t ws_in_len, ws_in_cap;
    int upgraded;  /* WS: the 101 seen */
    unsigned char mask[4]; /* WS: this client's masking key */
    int index;     /* its number: the port it uses (round-robin) and its IRC nick */
    uint32_t got[MAX_REACH]; /* fanout, capacity: lines of each sender received this step */
    int split;     /* fanout, capacity: a needle ended the last read, its sender digit starts the next */
};

static struct {
    enum proto proto;
    const char *host, *mode, *room;
    int join, await_room, ports[MAX_PORTS], nports, clients, senders, size, window, sample, batch;
    double duration, warmup, rate, timeout;
    int pids[MAX_PIDS], npids;
    int messages, step, max_clients; /* fanout, capacity */
} opt = {LINE, "127.0.0.1", "throughput", "#lobby", 0, 0, {5000}, 1, -1, -1, 64, 64, 8, 500,
         10.0, 2.0, 1000.0, 10.0, {0}, 0, 20, 1000, 10000};

static int echo; /* --echo: senders receive their own lines too, as gchat.bench's (the web page's style) */
/* --trace (fanout, capacity): on stderr, when each step connected and each line was sent and reached everyone
   (CLOCK_MONOTONIC seconds, as `perf record -k CLOCK_MONOTONIC` stamps samples): what a profile of the server
   was doing during a slow line is then a matter of looking at its samples in that interval. */
static int trace;
static struct conn *conns;
static int nconns, epfd;
static char token[TOKEN_LEN + 1], needle[32];
static const int needle_len = NEEDLE_LEN;
static uint64_t sent[MAX_SENDERS], probe_seen[MAX_SENDERS], sent_measured;
static int sender_conn[MAX_SENDERS], probe = -1;
static uint64_t hist[HIST_SIZE], hist_count, hist_max;
static uint64_t losses, duplicates, reorders, sampled_lines, foreign;
static uint64_t bad_length, bad_fields, spliced, unterminated;
static int64_t measure_start, measure_end; /* send-time window of the measured lines */
static int measuring; /* 0: warming up, 1: in the measured interval, 2: past it (draining) */
static char errors[4096];
/* fanout, capacity: per sender and line of the current step, how many receivers have it and when the last
   got it (0: not yet); `reach` is set in those modes, `members` is the room's receivers so far. */
static int reach, members;
static uint32_t *reached[MAX_REACH];
static int64_t *reached_at[MAX_REACH];
static uint64_t reach_lines; /* the length of those arrays */
static char recvbuf[64 + RECV_SIZE];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void add_error(const char *msg) {
    if (strstr(errors, msg)) return;
    size_t used = strlen(errors);
    snprintf(errors + used, sizeof errors - used, "%s%s", used ? "\x1f" : "", msg);
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void *grow(void *ptr, size_t *cap, size_t need) {
    if (need <= *cap) return ptr;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    ptr = realloc(ptr, cap2);
    if (!ptr) die("out of memory");
    *cap = cap2;
    return ptr;
}

/* ---- latency histogram (ns) ---- */
static int hist_index(uint64_t v) {
    if (v < (1u << SUB_BITS)) return (int)v;
    int bits = 63 - __builtin_clzll(v);
    int shift = bits - SUB_BITS;
    return ((shift + 1) << SUB_BITS) + (int)((v >> shift) - (1u << SUB_BITS));
}

static uint64_t hist_upper(int index) {
    if (index < (1 << SUB_BITS)) return (uint64_t)index;
    int shift = (index >> SUB_BITS) - 1;
    uint64_t base = (uint64_t)((index & ((1 << SUB_BITS) - 1)) + (1 << SUB_BITS));
    return ((base + 1) << shift) - 1;
}

static double hist_percentile(double q) {
    uint64_t rank = (uint64_t)(q / 100.0 * (double)hist_count + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_SIZE; i++) {
        seen += hist[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return (double)(v < hist_max ? v : hist_max);
        }
    }
    return (double)hist_max;
}

/* ---- CPU ---- */
static double server_cpu_s(void) {
    double total = 0;
    long tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < opt.npids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", opt.pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        if (!p) return -1;
        unsigned long utime = 0, stime = 0;
        /* after ")": state(3) ... utime is field 14, stime 15 */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
            return -1;
        total += (double)(utime + stime) / (double)tick;
    }
    return total;
}

/* The server's time on a CPU and waiting for one (run queue), ns from /proc/PID/schedstat, summed over the pids:
   for --trace, a slow line's server either worked, waited for its core (other processes had it) or idled. */
static void server_sched_ns(uint64_t *ran, uint64_t *waited) {
    *ran = *waited = 0;
    for (int i = 0; i < opt.npids; i++) {
        char path[64];
        unsigned long long run = 0, wait = 0;
        snprintf(path, sizeof path, "/proc/%d/schedstat", opt.pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fscanf(f, "%llu %llu", &run, &wait) == 2) *ran += run, *waited += wait;
        fclose(f);
    }
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int flush_out(struct conn *c);
static void arm(struct conn *c, int out);

/* Append bytes to the connection's output (after any batch in it: whole lines stay whole) and send. */
static void queue_raw(struct conn *c, const char *text, size_t len) {
    c->out = grow(c->out, &c->out_cap, c->out_len + len);
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
    if (!c->want_out) flush_out(c);
}

/* ---- IRC: registration, JOIN and PINGs (the checks of gchat/bench/irc.py) ---- */
static void pong(struct conn *c, const char *params, size_t len) {
    char reply[200];
    if (len && params[len - 1] == '\r') len--;
    if (len > sizeof reply - 8) return; /* no PING is that long: foreign bytes */
    int n = snprintf(reply, sizeof reply, "PONG %.*s\r\n", (int)len, params);
    queue_raw(c, reply, (size_t)n);
}

/* One server line (LF removed) before the client is in the room. A refusal (4xx, 5xx but 422, no
   MOTD; 263, the command dropped; ERROR) is reported in the server's words. */
static void irc_line(struct conn *c, char *line, size_t len) {
    char msg[400];
    if (len && line[len - 1] == '\r') line[--len] = 0;
    char *p = line, *end = line + len, *source = NULL;
    size_t source_len = 0;
    if (*p == '@') { /* IRCv3 tags */
        while (p < end && *p != ' ') p++;
        while (p < end && *p == ' ') p++;
    }
    if (*p == ':') {
        source = ++p;
        while (p < end && *p != ' ' && *p != '!') p++;
        source_len = (size_t)(p - source);
        while (p < end && *p != ' ') p++;
        while (p < end && *p == ' ') p++;
    }
    char *command = p;
    while (p < end && *p != ' ') p++;
    size_t command_len = (size_t)(p - command);
    while (p < end && *p == ' ') p++;
#define IS(word) (command_len == strlen(word) && strncasecmp(command, word, command_len) == 0)
    if (IS("PING")) {
        pong(c, p, (size_t)(end - p));
    } else if (IS("001")) {
        c->welcomed = 1;
        char *nick_end = memchr(p, ' ', (size_t)(end - p));
        size_t nick_len = nick_end ? (size_t)(nick_end - p) : (size_t)(end - p);
        if (nick_len && nick_len < sizeof c->nick) { /* the server may have changed our nick */
            memcpy(c->nick, p, nick_len);
            c->nick[nick_len] = 0;
        }
        int n = snprintf(msg, sizeof msg, "JOIN %s\r\n", opt.room);
        queue_raw(c, msg, (size_t)n);
    } else if ((IS("433") || IS("436") || IS("437")) && !c->welcomed) {
        size_t nick_len = strlen(c->nick);
        if (nick_len + 1 < sizeof c->nick) c->nick[nick_len] = '_', c->nick[nick_len + 1] = 0;
        int n = snprintf(msg, sizeof msg, "NICK %s\r\n", c->nick);
        queue_raw(c, msg, (size_t)n);
    } else if (IS("JOIN")) {
        if (*p == ':') p++;
        char *room_end = p;
        while (room_end < end && *room_end != ' ') room_end++;
        if (source && source_len == strlen(c->nick) && strncasecmp(source, c->nick, source_len) == 0 &&
            (size_t)(room_end - p) == strlen(opt.room) && strncasecmp(p, opt.room, strlen(opt.room)) == 0)
            c->ready = 1;
    } else if (IS("ERROR") || IS("263") || (command_len == 3 && (command[0] == '4' || command[0] == '5') && !IS("422"))) {
        snprintf(msg, sizeof msg, "the server said '%.300s' while %s joined %s", line, c->nick, opt.room);
        add_error(msg);
        c->closed = 1;
    }
#undef IS
}

/* Registration and JOIN, line by line (a line cut by a read waits in pending); bytes used. */
static size_t irc_handshake(struct conn *c, const char *data, size_t n) {
    const char *lf = memchr(data, '\n', n);
    size_t part = lf ? (size_t)(lf - data) : n;
    c->pending = grow(c->pending, &c->pending_cap, c->pending_len + part + 1);
    memcpy(c->pending + c->pending_len, data, part);
    c->pending_len += part;
    if (!lf) return n;
    c->pending[c->pending_len] = 0;
    irc_line(c, c->pending, c->pending_len);
    c->pending_len = 0;
    return part + 1;
}

/* A PING at `at` (its "PING " verified): answer it, or keep what there is if the read cut its line. */
static const char *irc_ping(struct conn *c, const char *at, const char *end) {
    const char *params = at + 5, *lf = memchr(params, '\n', (size_t)(end - params));
    if (lf) {
        pong(c, params, (size_t)(lf - params));
        return lf + 1;
    }
    c->in_ping = 1;
    c->ping_len = 0;
    size_t len = (size_t)(end - params);
    if (len < sizeof c->ping) memcpy(c->ping, params, len), c->ping_len = (int)len;
    else c->in_ping = 0; /* no PING is that long: foreign bytes */
    return end;
}

/* PINGs in [from, to), a stretch of the stream between relayed lines; matches that end before `fresh`
   (in the carry, so in the previous read) were seen then. */
static void irc_pings_in(struct conn *c, const char *from, const char *to, const char *fresh, const char *end) {
    for (const char *p = from; p < to && (p = memmem(p, (size_t)(to - p), "PING ", 5)); ) {
        if (p + 5 > fresh) p = irc_ping(c, p, end);
        else p += 5;
    }
}

/* ---- WebSocket (--proto ws): gchat's web page protocol, de-framed into lines ---- */
static const char WS_SAY[] = "{\"type\":\"say\",\"room\":\"%s\",\"text\":\"";

/* One masked client frame of `opcode` holding head + body + tail, appended to the output. */
static void ws_send(struct conn *c, int opcode, const char *head, size_t head_len, const char *body, size_t body_len,
                    const char *tail, size_t tail_len) {
    size_t len = head_len + body_len + tail_len;
    unsigned char hdr[14];
    size_t h = 0;
    hdr[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) hdr[h++] = (unsigned char)(0x80 | len);
    else if (len < 65536) hdr[h++] = 0x80 | 126, hdr[h++] = (unsigned char)(len >> 8), hdr[h++] = (unsigned char)len;
    else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(hdr + h, c->mask, 4);
    h += 4;
    c->out = grow(c->out, &c->out_cap, c->out_len + h + len);
    memcpy(c->out + c->out_len, hdr, h);
    unsigned char *p = (unsigned char *)c->out + c->out_len + h;
    memcpy(p, head, head_len);
    memcpy(p + head_len, body, body_len);
    memcpy(p + head_len + body_len, tail, tail_len);
    for (size_t i = 0; i < len; i++) p[i] ^= c->mask[i & 3];
    c->out_len += h + len;
}

/* A sender's line as the page's `say` request (the caller sends the batch). */
static void ws_say(struct conn *c, const char *line, size_t len) {
    char head[128];
    int n = snprintf(head, sizeof head, WS_SAY, opt.room);
    ws_send(c, 0x1, head, (size_t)n, line, len, "\"}", 2);
}

/* The upgrade request, sent once the connection is up (as IRC's registration). */
static void ws_open(struct conn *c, int port) {
    for (int i = 0; i < 4; i++) c->mask[i] = (unsigned char)(rand() | 1);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nOrigin: http://%s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.host, port, opt.host, port);
    c->out = grow(c->out, &c->out_cap, (size_t)n);
    memcpy(c->out, req, (size_t)n);
    c->out_len = (size_t)n;
    arm(c, 1);
}

/* The JSON string at `p` (after its opening quote) unescaped into `out`; its length, or -1 if it is not
   one (an escape this minimal reader does not know, or no closing quote). `*end`: past the quote. */
static long ws_json_string(const char *p, const char *limit, char *out, const char **end) {
    const char *quote = memchr(p, '"', (size_t)(limit - p));
    if (quote && !memchr(p, '\\', (size_t)(quote - p))) { /* no escape: every bench line */
        memcpy(out, p, (size_t)(quote - p));
        *end = quote + 1;
        return quote - p;
    }
    char *o = out;
    while (p < limit && *p != '"') {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        if (++p >= limit) return -1;
        char e = *p++;
        if (e == '"' || e == '\\' || e == '/') *o++ = e;
        else if (e == 'u' && limit - p >= 4) {
            unsigned v = 0;
            for (int i = 0; i < 4; i++, p++) {
                int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 32) >= 'a' && (*p | 32) <= 'f' ? (*p | 32) - 'a' + 10 : -1;
                if (d < 0) return -1;
                v = v * 16 + (unsigned)d;
            }
            if (v < 0x80) *o++ = (char)v;
            else if (v < 0x800) *o++ = (char)(0xc0 | v >> 6), *o++ = (char)(0x80 | (v & 0x3f));
            else *o++ = (char)(0xe0 | v >> 12), *o++ = (char)(0x80 | ((v >> 6) & 0x3f)), *o++ = (char)(0x80 | (v & 0x3f));
        } else return -1;
    }
    if (p >= limit) return -1;
    *end = p + 1;
    return o - out;
}

/* Where the value of member `key` (`,"nick":"`) starts, in the event's [from, limit): at `from` as gchat
   orders the members (one compare), else wherever it is; NULL if nowhere. */
static const char *ws_member(const char *from, const char *limit, const char *key, size_t len) {
    if ((size_t)(limit - from) >= len && memcmp(from, key, len) == 0) return from + len;
    const char *at = memmem(from, (size_t)(limit - from), key, len);
    return at ? at + len : NULL;
}

/* One text message from the server: a `message` event becomes `<nick> TEXT\n` at `out` (bytes written);
   the room's `arrived` makes the client ready; an `error` before that is the run's error. */
static size_t ws_event(struct conn *c, const char *p, size_t n, char *out) {
    static const char message[] = "{\"type\":\"message\"", nick[] = ",\"nick\":\"", text[] = ",\"text\":\"";
    static char lead[128]; /* a message event's start up to its nick, in gchat's order */
    static size_t lead_len;
    if (!lead_len) lead_len = (size_t)snprintf(lead, sizeof lead, "%s,\"room\":\"%s\"", message, opt.room);
    const char *limit = p + n, *at, *end;
    if (n >= sizeof message - 1 && memcmp(p, message, sizeof message - 1) == 0) {
        char *o = out;
        *o++ = '<';
        long len;
        at = n > lead_len && memcmp(p, lead, lead_len) == 0 ? p + lead_len : p + sizeof message - 1;
        if (!(at = ws_member(at, limit, nick, sizeof nick - 1)) || (len = ws_json_string(at, limit, o, &end)) < 0)
            goto malformed;
        o += len;
        *o++ = '>', *o++ = ' ';
        if (!(at = ws_member(end, limit, text, sizeof text - 1)) || (len = ws_json_string(at, limit, o, &end)) < 0)
            goto malformed;
        o += len;
        *o++ = '\n';
        return (size_t)(o - out);
    malformed:
        bad_fields++;
        return 0;
    }
    char want[128];
    int wlen = snprintf(want, sizeof want, "{\"type\":\"arrived\",\"room\":\"%s\"", opt.room);
    if (c->ready != 1 && n >= (size_t)wlen && memcmp(p, want, (size_t)wlen) == 0) c->ready = 1;
    else if (c->ready != 1 && n > 15 && memcmp(p, "{\"type\":\"error\"", 15) == 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "the server said '%.*s' while a client joined", (int)(n < 300 ? n : 300), p);
        add_error(msg);
        c->closed = 1;
    }
    return 0;
}

/* The complete frames at the start of [p, p + n) handled, their lines at `out`: bytes of frames used. */
static size_t ws_frames(struct conn *c, const char *p, size_t n, char *out, size_t *out_len) {
    size_t used = 0;
    while (n - used >= 2) {
        const unsigned char *f = (const unsigned char *)p + used;
        size_t avail = n - used, h = 2;
        uint64_t len = f[1] & 0x7f;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)f[2] << 8 | f[3], h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0, h = 10;
            for (int i = 2; i < 10; i++) len = len << 8 | f[i];
        }
        if (f[1] & 0x80 || !(f[0] & 0x80) || len > 16 * 1024 * 1024) {
            add_error("a WebSocket frame the server should not send (masked, fragmented or over 16 MiB)");
            c->closed = 1;
            return n;
        }
        if (avail - h < len) break;
        const char *payload = (const char *)f + h;
        int opcode = f[0] & 0x0f;
        if (opcode == 0x1) *out_len += ws_event(c, payload, (size_t)len, out + *out_len);
        else if (opcode == 0x9) ws_send(c, 0xA, payload, (size_t)len, "", 0, "", 0), flush_out(c);
        else if (opcode == 0x8) c->closed = 1;
        used += h + (size_t)len;
    }
    return used;
}

/* Keep bytes a read cut (what is left of [p, p + n) from `used` on) for the next read. */
static void ws_keep(struct conn *c, const char *p, size_t n, size_t used) {
    c->ws_in = grow(c->ws_in, &c->ws_in_cap, n - used);
    memmove(c->ws_in, p + used, n - used);
    c->ws_in_len = n - used;
}

/* The 101 at the start of ws_in: 1 once its header is whole (the rest of ws_in is frames), 0 if not yet. */
static int ws_upgrade(struct conn *c) {
    char *end = memmem(c->ws_in, c->ws_in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    if (c->ws_in_len < 13 || memcmp(c->ws_in, "HTTP/1.1 101 ", 13) != 0) {
        char msg[300];
        char *eol = memchr(c->ws_in, '\r', c->ws_in_len);
        snprintf(msg, sizeof msg, "the server refused the WebSocket: %.*s", (int)(eol - c->ws_in), c->ws_in);
        add_error(msg);
        c->closed = 1;
        return 0;
    }
    c->upgraded = 1;
    ws_keep(c, c->ws_in, c->ws_in_len, (size_t)(end + 4 - c->ws_in));
    if (strcmp(opt.room, "#lobby") != 0) { /* the lobby's arrival comes by itself */
        char head[128];
        int n = snprintf(head, sizeof head, "{\"type\":\"join\",\"room\":\"%s\"}", opt.room);
        ws_send(c, 0x1, head, (size_t)n, "", 0, "", 0);
        flush_out(c);
    }
    return 1;
}

/* read() for --proto ws: the lines the frames read hold, at most `cap` bytes (a line is shorter than
   its frame), or -1 with EAGAIN when the bytes read held no line (the upgrade, other events, a cut). */
static ssize_t ws_read(struct conn *c, char *buf, size_t cap) {
    static char raw[RECV_SIZE];
    size_t room = cap - c->ws_in_len; /* frames the read completes, with what waits, fit in `cap` */
    ssize_t r = read(c->fd, raw, room < sizeof raw ? room : sizeof raw);
    if (r <= 0) return r;
    size_t out = 0, off = 0;
    if (!c->upgraded || c->ws_in_len) {
        /* Complete what waits, a piece at a time: the header, then just the rest of its frame. */
        while (off < (size_t)r && !c->closed) {
            size_t take = (size_t)r - off;
            if (c->upgraded) {
                const unsigned char *f = (const unsigned char *)c->ws_in;
                size_t have = c->ws_in_len, need = 14;
                if (have >= 2 && (f[1] & 0x7f) < 126) need = 2 + (f[1] & 0x7f);
                else if (have >= 4 && (f[1] & 0x7f) == 126) need = 4 + ((size_t)f[2] << 8 | f[3]);
                if (need > have && need - have < take) take = need - have;
            }
            c->ws_in = grow(c->ws_in, &c->ws_in_cap, c->ws_in_len + take);
            memcpy(c->ws_in + c->ws_in_len, raw + off, take);
            c->ws_in_len += take;
            off += take;
            if (!c->upgraded && !ws_upgrade(c)) continue;
            ws_keep(c, c->ws_in, c->ws_in_len, ws_frames(c, c->ws_in, c->ws_in_len, buf, &out));
            if (!c->ws_in_len) break;
        }
    }
    if (off < (size_t)r && !c->closed) ws_keep(c, raw + off, (size_t)r - off, ws_frames(c, raw + off, (size_t)r - off, buf, &out));
    if (out || c->closed) return c->closed && !out ? 0 : (ssize_t)out;
    errno = EAGAIN;
    return -1;
}

/* ---- receiving ---- */

/* The first needle in [p, end), or NULL. Every delivery is found here, so it is the load generator's
   inner loop: glibc's memmem took 60% of its core at 1,000 clients (perf record). A line holds `~`
   only in its marker (`~gb~`), so the bytes where `~` is followed 3 bytes on by `~` again are the
   candidates, a vector at a time (SSE2, baseline on x86-64, or AVX2 where the CPU has it), each
   confirmed by comparing the whole needle: the same matches as memmem, which finishes what is left
   of the range. The needle cannot overlap itself (it ends in its only space), so no match hides
   another. */
#define NEEDLE_SCAN(vector, width, load, set1, cmpeq, and, movemask)                              \
    const vector tilde = set1('~');                                                              \
    for (; end - p >= (width) + NEEDLE_LEN - 1; p += (width)) {                                  \
        vector first = cmpeq(load((const vector *)p), tilde);                                    \
        vector fourth = cmpeq(load((const vector *)(p + 3)), tilde);                             \
        for (unsigned mask = (unsigned)movemask(and(first, fourth)); mask; mask &= mask - 1) {   \
            const char *at = p + __builtin_ctz(mask);                                            \
            if (memcmp(at, needle, NEEDLE_LEN) == 0) return at;                                  \
        }                                                                                        \
    }                                                                                            \
    return memmem(p, (size_t)(end - p), needle, NEEDLE_LEN);

#ifdef __SSE2__
static const char *next_needle_sse2(const char *p, const char *end) {
    NEEDLE_SCAN(__m128i, 16, _mm_loadu_si128, _mm_set1_epi8, _mm_cmpeq_epi8, _mm_and_si128, _mm_movemask_epi8)
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_SCAN
__attribute__((target("avx2"))) static const char *next_needle_avx2(const char *p, const char *end) {
    NEEDLE_SCAN(__m256i, 32, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_cmpeq_epi8, _mm256_and_si256,
                _mm256_movemask_epi8)
}
#endif
#else
static const char *next_needle_memmem(const char *p, const char *end) {
    return memmem(p, (size_t)(end - p), needle, NEEDLE_LEN);
}
#endif

/* The scan for this CPU, chosen in main. */
static const char *(*next_needle)(const char *p, const char *end);

static void choose_needle_scan(void) {
#ifdef __SSE2__
    next_needle = next_needle_sse2;
#ifdef HAVE_AVX2_SCAN
    if (__builtin_cpu_supports("avx2")) next_needle = next_needle_avx2;
#endif
#else
    next_needle = next_needle_memmem;
#endif
}
static int digits(const char *s, size_t n, uint64_t *out) {
    if (n == 0 || n > 20) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

/* One complete line (LF removed) on a sampled receiver: the checks of gchat.bench's parse_line. */
static void inspect(struct conn *c, const char *line, size_t len, int64_t now) {
    if (len && line[len - 1] == '\r') len--;
    const char *m = memmem(line, len, MARKER, 4);
    if (!m) return;
    const char *end = line + len;
    if (memmem(m + 4, (size_t)(end - m - 4), MARKER, 4)) {
        if (memmem(line, len, needle, (size_t)needle_len)) spliced++;
        else foreign++;
        return;
    }
    if ((size_t)(end - m) < (size_t)needle_len || memcmp(m, needle, (size_t)needle_len) != 0) {
        foreign++;
        return;
    }
    if ((size_t)(end - m) != (size_t)opt.size - 1) {
        bad_length++;
        return;
    }
    const char *f = m + needle_len;
    uint64_t field[3];
    for (int i = 0; i < 3; i++) {
        const char *sp = memchr(f, ' ', (size_t)(end - f));
        if (!sp || !digits(f, (size_t)(sp - f), &field[i])) {
            bad_fields++;
            return;
        }
        f = sp + 1;
    }
    if (f >= end) {
        bad_fields++;
        return;
    }
    for (const char *p = f; p < end; p++)
        if (*p != '.') {
            bad_fields++;
            return;
        }
    uint64_t s = field[0], seq = field[1];
    int64_t sent_ns = (int64_t)field[2];
    if (s >= (uint64_t)opt.senders) {
        bad_fields++;
        return;
    }
    sampled_lines++;
    uint64_t expect = c->next_seq[s];
    if (seq == expect) c->next_seq[s] = seq + 1;
    else if (seq > expect) {
        losses += seq - expect; /* a gap: lines never delivered to this receiver */
        c->next_seq[s] = seq + 1;
    } else if (seq + 1 == expect) duplicates++;
    else reorders++;
    if (c - conns == probe && c->next_seq[s] > probe_seen[s]) probe_seen[s] = c->next_seq[s];
    if (sent_ns >= measure_start && sent_ns < measure_end && measuring) {
        uint64_t v = (uint64_t)(now - sent_ns);
        hist[hist_index(v)]++;
        hist_count++;
        if (v > hist_max) hist_max = v;
    }
}

static void lines_of(struct conn *c, const char *data, size_t n, int64_t now) {
    const char *p = data, *end = data + n;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf) {
            c->pending = grow(c->pending, &c->pending_cap, c->pending_len + (size_t)(end - p));
            memcpy(c->pending + c->pending_len, p, (size_t)(end - p));
            c->pending_len += (size_t)(end - p);
            if (c->pending_len > 65536 + 4 * (size_t)opt.size) {
                unterminated++;
                c->pending_len = 0;
            }
            return;
        }
        if (c->pending_len) {
            c->pending = grow(c->pending, &c->pending_cap, c->pending_len + (size_t)(lf - p));
            memcpy(c->pending + c->pending_len, p, (size_t)(lf - p));
            inspect(c, c->pending, c->pending_len + (size_t)(lf - p), now);
            c->pending_len = 0;
        } else {
            inspect(c, p, (size_t)(lf - p), now);
        }
        p = lf + 1;
    }
}

/* Before a client is ready: the welcome line, the join reply, or the SUBSCRIBE confirmation. */
static size_t handshake(struct conn *c, const char *data, size_t n) {
    if (opt.proto == REDIS) {
        /* "*3\r\n$9\r\nsubscribe\r\n$L\r\nCHANNEL\r\n:1\r\n": ready at its last line; a publisher that
           waits for its connection (fanout, capacity) is ready at the reply to its PING. */
        const char *reply = c->role == PUBLISHER ? "+PONG\r\n" : ":1\r\n";
        const char *hit = memmem(data, n, reply, strlen(reply));
        if (!hit) return n; /* confirmations arrive whole on loopback; nothing precedes them */
        c->ready = 1;
        return (size_t)(hit + strlen(reply) - data);
    }
    const char *lf = memchr(data, '\n', n);
    if (!lf) return n;
    size_t used = (size_t)(lf + 1 - data);
    if (lf - data >= 4 && memcmp(data, "!!! ", 4) == 0) { /* gchat's refusals: server full, no such room */
        char msg[300];
        snprintf(msg, sizeof msg, "the server said '%.*s' while a client connected", (int)(lf - data < 200 ? lf - data : 200),
                 data);
        add_error(msg);
        c->closed = 1;
        return n;
    }
    if (c->ready == 0) {
        /* The welcome. With --join, ask for the room; with --join or --await-room, the client is
           ready only at a line naming the room (gchat's status line, which a cluster node sends
           once the join is back from Redis). */
        if (opt.join) {
            char cmd[256];
            int len = snprintf(cmd, sizeof cmd, "/join %s\n", opt.room);
            if (write(c->fd, cmd, (size_t)len) != len) add_error("could not send /join");
        }
        c->ready = opt.join || opt.await_room ? -1 : 1;
    } else if (memmem(data, (size_t)(lf - data), opt.room, strlen(opt.room))) {
        c->ready = 1;
    }
    return used;
}

/* What a sending connection receives is dropped, but for an IRC server's PINGs (answered; a carry
   finds one a read boundary cut) and a Redis error reply to a PUBLISH (the run's error). */
static void speaker_read(struct conn *c, char *data, size_t n) {
    if (opt.proto == IRC) {
        char *start = data - c->carry_len;
        memcpy(start, c->carry, (size_t)c->carry_len);
        irc_pings_in(c, start, data + n, data, data + n);
        int keep = 4; /* "PING " less a byte */
        if (data + n - start < keep) keep = (int)(data + n - start);
        memcpy(c->carry, data + n - keep, (size_t)keep);
        c->carry_len = keep;
    } else if (opt.proto == REDIS) {
        const char *e = data[0] == '-' ? data : memmem(data, n, "\n-", 2);
        if (!e) return;
        if (*e == '\n') e++;
        const char *eol = memchr(e, '\r', (size_t)(data + n - e));
        int len = (int)((eol ? eol : data + n) - e);
        char msg[300];
        snprintf(msg, sizeof msg, "the server answered a PUBLISH connection with '%.*s'", len < 200 ? len : 200, e);
        add_error(msg);
    }
}

/* fanout, capacity: receiver c has one more line of sender `digit` (a character); the last of the
   room's receivers to get a line sets when it reached everyone. */
static void reach_sender(struct conn *c, char digit, int64_t now) {
    unsigned s = (unsigned)(digit - '0');
    if (s >= (unsigned)opt.senders) return; /* a damaged line: the sampled receivers' checks say how */
    uint32_t line = c->got[s]++;
    if (line < reach_lines && ++reached[s][line] == (uint32_t)members) reached_at[s][line] = now;
}

/* A needle found, its sender digit at `at`, unless the read ends first. */
static void reach_match(struct conn *c, const char *at, const char *end, int64_t now) {
    if (at < end) reach_sender(c, *at, now);
    else c->split = 1;
}

static int parse_ints(const char *text, int *into, int most) {
    int n = 0;
    for (char *p = (char *)text; *p && n < most; p++) {
        into[n++] = (int)strtol(p, &p, 10);
        if (!*p) break;
    }
    return n;
}

static void on_readable(struct conn *c, int64_t now) {
    for (;;) {
        char *buf = recvbuf + 64;
        ssize_t n = opt.proto == WS ? ws_read(c, buf, RECV_SIZE) : read(c->fd, buf, RECV_SIZE);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            c->closed = 1;
            return;
        }
        if (n == 0) {
            c->closed = 1;
            return;
        }
        size_t off = 0;
        if (opt.proto == IRC) {
            while (c->ready != 1 && !c->closed && off < (size_t)n) off += irc_handshake(c, buf + off, (size_t)n - off);
        } else if (opt.proto != WS) { /* WS: ready at its arrival event (ws_read) */
            while (c->ready != 1 && off < (size_t)n) off += handshake(c, buf + off, (size_t)n - off);
        }
        if (opt.proto == IRC && c->in_ping && off < (size_t)n) {
            /* The rest of a PING line the previous read cut. */
            const char *lf = memchr(buf + off, '\n', (size_t)n - off);
            size_t part = lf ? (size_t)(lf - buf - off) : (size_t)n - off;
            if ((size_t)c->ping_len + part < sizeof c->ping) {
                memcpy(c->ping + c->ping_len, buf + off, part);
                c->ping_len += (int)part;
                if (lf) pong(c, c->ping, (size_t)c->ping_len);
            }
            if (lf || (size_t)c->ping_len + part >= sizeof c->ping) c->in_ping = 0;
        }
        if (c->role == PUBLISHER && off < (size_t)n) speaker_read(c, buf + off, (size_t)n - off);
        if (c->role == PUBLISHER || off >= (size_t)n) {
            if ((size_t)n < RECV_SIZE) return;
            continue;
        }
        if (c->split) { /* the sender digit of the needle that ended the last read */
            c->split = 0;
            reach_sender(c, buf[off], now);
        }
        /* Count needles in carry + the new bytes without copying the chunk. */
        char *start = buf + off - c->carry_len;
        memcpy(start, c->carry, (size_t)c->carry_len);
        char *end = buf + n;
        uint64_t found = 0;
        if (opt.proto == IRC) {
            /* Relayed lines cannot hold a PING; what lies between them can. Between two relayed lines
               there is only the next one's prefix unless an LF says otherwise (one short memchr a line),
               so the whole read is searched only where other lines came: the head and the tail. */
            const char *gap = start, *fresh = buf + off;
            for (const char *p = start; (p = next_needle(p, end)); p += needle_len) {
                /* A short line (a damaged one: the checks count it) can put gap past this needle. */
                if (p > gap && (gap == start || memchr(gap, '\n', (size_t)(p - gap))))
                    irc_pings_in(c, gap, p, fresh, end);
                found++;
                if (reach) reach_match(c, p + needle_len, end, now);
                /* Past the payload (size - 1 bytes from the needle on) and its CRLF. */
                gap = p + opt.size + 1 < end ? p + opt.size + 1 : end;
            }
            irc_pings_in(c, gap, end, fresh, end);
        } else {
            for (const char *p = start; (p = next_needle(p, end)); p += needle_len) {
                found++;
                if (reach) reach_match(c, p + needle_len, end, now);
            }
        }
        c->delivered += found;
        if (measuring == 1) c->delivered_measured += found;
        int keep = needle_len - 1;
        if (end - start < keep) keep = (int)(end - start);
        memcpy(c->carry, end - keep, (size_t)keep);
        c->carry_len = keep;
        if (c->sampled) lines_of(c, buf + off, (size_t)n - off, now);
        if ((size_t)n < RECV_SIZE) return;
    }
}

/* ---- sending ---- */
static void arm(struct conn *c, int out) {
    if (c->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static int flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                arm(c, 1);
                return 0;
            }
            if (errno == EINTR) continue;
            c->closed = 1;
            return 0;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    arm(c, 0);
    return 1;
}

/* Append line `seq` of sender `s`, stamped now, to its connection's output. */
static void queue_line(struct conn *c, int s, int64_t now) {
    char payload[65536];
    int body = opt.size - 1;
    int head = snprintf(payload, sizeof payload, "%s%d %" PRIu64 " %" PRId64 " ", needle, s, sent[s], now);
    if (head >= body) die("--size is too small for the line's fields");
    memset(payload + head, '.', (size_t)(body - head));
    if (opt.proto == WS) {
        ws_say(c, payload, (size_t)body);
        goto queued;
    }
    char frame[128];
    int flen = 0;
    if (opt.proto == REDIS)
        flen = snprintf(frame, sizeof frame, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(opt.room),
                        opt.room, body);
    else if (opt.proto == IRC)
        flen = snprintf(frame, sizeof frame, "PRIVMSG %s :", opt.room);
    size_t need = c->out_len + (size_t)flen + (size_t)body + 2;
    c->out = grow(c->out, &c->out_cap, need);
    memcpy(c->out + c->out_len, frame, (size_t)flen);
    c->out_len += (size_t)flen;
    memcpy(c->out + c->out_len, payload, (size_t)body);
    c->out_len += (size_t)body;
    if (opt.proto != LINE) c->out[c->out_len++] = '\r';
    c->out[c->out_len++] = '\n';
queued:
    sent[s]++;
    if (measuring == 1) sent_measured++;
}

/* Flat out: every sender whose output is drained sends what its window allows. */
static void send_window(int64_t now) {
    for (int s = 0; s < opt.senders; s++) {
        struct conn *c = &conns[sender_conn[s]];
        if (c->closed || c->out_len) continue;
        while (sent[s] - probe_seen[s] < (uint64_t)opt.window) queue_line(c, s, now);
        flush_out(c);
    }
}

/* Paced: line k of sender s is due at t0 + s / rate + k * senders / rate, so lines come evenly,
   one every 1 / rate seconds, never S at once (a burst the server would batch into one send). */
static int64_t due_at(int64_t t0, int s, uint64_t k) {
    return t0 + (int64_t)(((double)s + (double)k * opt.senders) / opt.rate * 1e9);
}

static void send_due(int64_t t0, int64_t now) {
    for (int s = 0; s < opt.senders; s++) {
        struct conn *c = &conns[sender_conn[s]];
        if (c->closed) continue;
        while (due_at(t0, s, sent[s]) <= now) queue_line(c, s, now);
        if (c->out_len && !c->want_out) flush_out(c);
    }
}

static int64_t next_due(int64_t t0) {
    int64_t best = INT64_MAX;
    for (int s = 0; s < opt.senders; s++) {
        int64_t at = due_at(t0, s, sent[s]);
        if (at < best) best = at;
    }
    return best;
}

/* ---- connecting ---- */
static int open_conn(struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket() failed: raise the open-files limit");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void poll_once(int timeout_ms, int64_t *t0_paced);

static int ready_count(int from, int to) {
    int n = 0;
    for (int i = from; i < to; i++) n += conns[i].ready == 1;
    return n;
}

static struct sockaddr_in addrs[MAX_PORTS];

/* Open connection c (to the port its index picks, round-robin) and start its handshake; -1 if it cannot. */
static int start_conn(struct conn *c) {
    int port = c->index % opt.nports;
    c->fd = open_conn(&addrs[port]);
    if (c->fd < 0) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    char cmd[256];
    int len = 0;
    if (opt.proto == IRC) {
        /* A sender with a connection of its own is benchNs, apart from receiver N (as gchat.bench). */
        snprintf(c->nick, sizeof c->nick, c->role == PUBLISHER ? "bench%ds" : "bench%d", c->index);
        len = snprintf(cmd, sizeof cmd, "NICK %s\r\nUSER %s 0 * :bench\r\n", c->nick, c->nick);
    } else if (opt.proto == WS) {
        ws_open(c, opt.ports[port]);
    } else if (opt.proto == REDIS && c->role == RECEIVER) {
        len = snprintf(cmd, sizeof cmd, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(opt.room), opt.room);
    } else if (opt.proto == REDIS && !c->ready) {
        len = snprintf(cmd, sizeof cmd, "*1\r\n$4\r\nPING\r\n"); /* a publisher ready at the PONG */
    }
    if (len) {
        c->out = grow(c->out, &c->out_cap, (size_t)len);
        memcpy(c->out, cmd, (size_t)len);
        c->out_len = (size_t)len;
        arm(c, 1);
    }
    return 0;
}

/* Connect conns [from, to), --batch at a time, each batch ready before the next; -1 with the error noted. */
static int connect_range(int from, int to) {
    char msg[256];
    for (int first = from; first < to; first += opt.batch) {
        int last = first + opt.batch < to ? first + opt.batch : to;
        for (int i = first; i < last; i++)
            if (start_conn(&conns[i]) < 0) {
                int port = opt.ports[conns[i].index % opt.nports];
                snprintf(msg, sizeof msg, "cannot connect to %s:%d: %s", opt.host, port, strerror(errno));
                add_error(msg);
                return -1;
            }
        int64_t deadline = now_ns() + (int64_t)(opt.timeout * 1e9);
        while (ready_count(first, last) < last - first) {
            if (now_ns() > deadline) {
                snprintf(msg, sizeof msg, "only %d of %d clients ready after %.0f s", ready_count(from, last),
                         to - from, opt.timeout);
                add_error(msg);
                return -1;
            }
            poll_once(50, NULL);
            for (int i = first; i < last; i++)
                if (conns[i].closed) {
                    add_error("the server closed a connection while clients connected");
                    return -1;
                }
        }
    }
    return 0;
}

static void emit(double interval, double gen_cpu, double srv_cpu, uint64_t expected, uint64_t delivered,
                 uint64_t measured);
static void emit_head(uint64_t expected, uint64_t delivered);
static void emit_generator(double share, double wall);
static void json_string(const char *s);

/* ---- fanout and capacity: how long a line takes to reach every member of a room ---- */

/* A value from /proc/PID/status (VmRSS, VmHWM), in KiB, summed over the --pid processes; -1 if unknown. */
static long status_kb(const char *field) {
    long total = 0;
    if (!opt.npids) return -1;
    for (int i = 0; i < opt.npids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", opt.pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) return -1;
        long kb = -1;
        size_t flen = strlen(field);
        while (fgets(line, sizeof line, f))
            if (strncmp(line, field, flen) == 0 && line[flen] == ':') kb = atol(line + flen + 1);
        fclose(f);
        if (kb < 0) return -1;
        total += kb;
    }
    return total;
}

/* A fresh token, so that lines of an earlier step (a history a server replays) are foreign. */
static void new_token(void) {
    for (int i = 0; i < TOKEN_LEN; i++) token[i] = "0123456789abcdef"[rand() % 16];
    snprintf(needle, sizeof needle, "%s%s ", MARKER, token);
}

/* A new step over the receivers conns[first, first + count): a fresh token, every count at zero, `lines`
   lines a sender tracked, and --sample receivers spread evenly over the room checking every line (the
   last receiver among them: a server fans out in an order of its own, samples bunched at one end would
   credit or charge that order). */
static void new_step(int first, int count, uint64_t lines) {
    new_token();
    members = count;
    reach_lines = lines;
    for (int s = 0; s < opt.senders; s++) {
        free(reached[s]);
        free(reached_at[s]);
        reached[s] = calloc(lines, sizeof **reached);
        reached_at[s] = calloc(lines, sizeof **reached_at);
        if (!reached[s] || !reached_at[s]) die("out of memory");
        sent[s] = 0;
    }
    int samples = opt.sample < count ? opt.sample : count;
    for (int i = first; i < first + count; i++) {
        struct conn *c = &conns[i];
        memset(c->got, 0, sizeof c->got);
        c->split = 0;
        c->sampled = 0;
    }
    for (int j = 0; j < samples; j++) {
        struct conn *c = &conns[first + count - 1 - (samples > 1 ? (int)((long)j * (count - 1) / (samples - 1)) : 0)];
        c->sampled = 1;
        c->pending_len = 0; /* what it was parsing, if it was sampled before, belongs to no line of this step */
        if (!c->next_seq) c->next_seq = calloc(MAX_REACH, sizeof(uint64_t));
        memset(c->next_seq, 0, MAX_REACH * sizeof(uint64_t));
    }
}

/* Sender s's next line, now: its send time. */
static int64_t speak(int s) {
    struct conn *c = &conns[sender_conn[s]];
    int64_t now = now_ns();
    queue_line(c, s, now);
    if (!c->want_out) flush_out(c);
    return now;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* gchat.bench's percentile: nearest rank over sorted values, always one that was observed. */
static double nearest_rank(const double *sorted, int n, int q) {
    int rank = (int)(((long)q * n + 99) / 100);
    return sorted[(rank < 1 ? 1 : rank) - 1];
}

/* One round: `untimed` then `timed` lines from every sender, each sent once its previous one reached every
   receiver. Timing starts only once every sender's untimed lines have reached everyone, so the room is quiet:
   whatever the server still owed anyone (join notices of the connections just made) went out before them,
   and a timed line measures the fan-out alone. Reach times (ms) go to `into` in the order they complete;
   their number is returned, and on a line that took longer than --timeout, `error` says so. */
static int run_round(int untimed, int timed, double *into, char *error, size_t error_len) {
    int64_t sent_at[MAX_REACH];
    uint64_t ran_at[MAX_REACH], waited_at[MAX_REACH];
    uint64_t done[MAX_REACH] = {0};
    uint64_t total = (uint64_t)(untimed + timed);
    int count = 0;
    int64_t looked = now_ns();
    for (int s = 0; s < opt.senders; s++) {
        sent_at[s] = speak(s);
        if (trace) server_sched_ns(&ran_at[s], &waited_at[s]);
    }
    for (;;) {
        poll_once(10, NULL);
        int senders_done = 0, warm = 1;
        for (int s = 0; s < opt.senders; s++) {
            while (done[s] < sent[s] && reached_at[s][done[s]]) {
                double ms = (double)(reached_at[s][done[s]] - sent_at[s]) / 1e6;
                if (done[s] >= (uint64_t)untimed) into[count++] = ms;
                if (trace) {
                    uint64_t ran, waited;
                    server_sched_ns(&ran, &waited);
                    fprintf(stderr,
                            "%.6f line %d %" PRIu64 " sent, reached all at %.6f: %.3f ms%s; server ran %.1f ms,"
                            " waited for its core %.1f ms\n",
                            (double)sent_at[s] / 1e9, s, done[s], (double)reached_at[s][done[s]] / 1e9, ms,
                            done[s] < (uint64_t)untimed ? " (untimed)" : "", (double)(ran - ran_at[s]) / 1e6,
                            (double)(waited - waited_at[s]) / 1e6);
                }
                done[s]++;
            }
            warm &= done[s] >= (uint64_t)untimed;
        }
        int64_t now = now_ns();
        for (int s = 0; s < opt.senders; s++) {
            if (done[s] < sent[s]) {
                if (now - sent_at[s] > (int64_t)(opt.timeout * 1e9)) {
                    snprintf(error, error_len, "a line did not reach all %d clients in %g s", members, opt.timeout);
                    return count;
                }
            } else if (sent[s] == total) {
                senders_done++;
            } else if (sent[s] < (uint64_t)untimed || warm) {
                sent_at[s] = speak(s);
                if (trace) server_sched_ns(&ran_at[s], &waited_at[s]);
            }
        }
        if (senders_done == opt.senders) return count;
        if (now - looked > 100000000) { /* every 0.1 s, not at every wakeup: a look at every connection */
            looked = now;
            for (int i = 0; i < nconns; i++)
                if (conns[i].closed) {
                    add_error("the server closed a connection during the run");
                    return count;
                }
        }
    }
}

/* The sampled receivers' tails: lines of this step's that never came. */
static void step_losses(void) {
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (!c->sampled) continue;
        for (int s = 0; s < opt.senders; s++)
            if (c->next_seq[s] < sent[s]) losses += sent[s] - c->next_seq[s];
    }
}

static uint64_t step_deliveries(int first, int count) {
    uint64_t got = 0;
    for (int i = first; i < first + count; i++)
        for (int s = 0; s < opt.senders; s++) got += conns[i].got[s];
    return got;
}

/* The p95, median and max of n reach times (n > 0), as gchat.bench reports them. */
struct reach_stats {
    double p95, median, max;
};

static struct reach_stats reach_stats(const double *values, int n) {
    double *sorted = malloc(sizeof(double) * (size_t)n);
    if (!sorted) die("out of memory");
    memcpy(sorted, values, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), by_value);
    struct reach_stats found = {nearest_rank(sorted, n, 95), nearest_rank(sorted, n, 50), sorted[n - 1]};
    free(sorted);
    return found;
}

static double share(double cpu, double wall) { return wall > 0 ? cpu / wall : 0; }

static void json_share(const char *key, double cpu, double wall) {
    if (cpu >= 0 && wall > 0) printf(", \"%s\": %.3f", key, cpu / wall);
    else printf(", \"%s\": null", key);
}

/* A timed round's CPU: the generator's own and the server's (-1: no --pid), the server's wait for its core
   (run queue: other processes had it), and its wall time, in seconds. */
struct round_cpu {
    double self, server, waited, wall;
};

static struct round_cpu round_start(void) {
    uint64_t ran, waited;
    server_sched_ns(&ran, &waited);
    return (struct round_cpu){self_cpu_s(), opt.npids ? server_cpu_s() : -1, opt.npids ? (double)waited / 1e9 : -1,
                              (double)now_ns() / 1e9};
}

static struct round_cpu round_end(struct round_cpu start) {
    struct round_cpu end = round_start();
    return (struct round_cpu){end.self - start.self, start.server >= 0 && end.server >= 0 ? end.server - start.server : -1,
                              start.waited >= 0 ? end.waited - start.waited : -1, end.wall - start.wall};
}

static int exit_status(uint64_t expected, uint64_t delivered) {
    return errors[0] || losses || duplicates || reorders || bad_length || bad_fields || spliced || unterminated ||
           delivered != expected;
}

/* gchat.bench fanout: --clients idle receivers, then one sender's --messages lines one at a time. The
   generator's CPU is over the lines' round (connect_cpu: while the room connected). */
static int run_fanout(void) {
    int receivers = opt.clients, first = opt.senders;
    long rss_before = status_kb("VmRSS"), rss_after = -1;
    struct round_cpu connect = round_start(), cpu = {0, -1, -1, 0};
    int failed = connect_range(first, first + receivers) < 0 || connect_range(0, first) < 0;
    connect = round_end(connect);
    double *reach_ms = calloc((size_t)opt.messages, sizeof(double));
    if (!reach_ms) die("out of memory");
    char step_error[256] = "";
    int count = 0;
    uint64_t expected = 0, got = 0;
    if (!failed) {
        rss_after = status_kb("VmRSS");
        new_step(first, receivers, (uint64_t)opt.messages);
        struct round_cpu start = round_start();
        count = run_round(0, opt.messages, reach_ms, step_error, sizeof step_error);
        cpu = round_end(start);
        if (step_error[0]) add_error(step_error);
        step_losses();
        expected = sent[0] * (uint64_t)receivers;
        got = step_deliveries(first, receivers);
    }
    emit_head(expected, got);
    emit_generator(share(cpu.self, cpu.wall), cpu.wall);
    printf(", \"results\": {\"clients\": %d, \"connect_s\": %.3f, \"messages\": %d, \"reach_all_ms\": {", receivers,
           connect.wall, count);
    if (count) {
        struct reach_stats stats = reach_stats(reach_ms, count);
        printf("\"median\": %.3f, \"max\": %.3f, \"samples\": [", stats.median, stats.max);
    } else {
        printf("\"median\": null, \"max\": null, \"samples\": [");
    }
    for (int i = 0; i < count; i++) printf("%s%.3f", i ? ", " : "", reach_ms[i]);
    printf("]}, \"server_rss_kb\": ");
    if (rss_before >= 0 && rss_after >= 0) {
        printf("{\"pids\": [");
        for (int i = 0; i < opt.npids; i++) printf("%s%d", i ? ", " : "", opt.pids[i]);
        printf("], \"before\": %ld, \"after\": %ld, \"per_connection\": %.2f}", rss_before, rss_after,
               (double)(rss_after - rss_before) / receivers);
    } else {
        printf("null");
    }
    printf(", \"cpu\": [{\"worker\": 0, \"cpu\": %.3f, \"wall_s\": %.3f}]", share(cpu.self, cpu.wall), cpu.wall);
    json_share("connect_cpu", connect.self, connect.wall);
    json_share("server_cpu", cpu.server, cpu.wall);
    json_share("server_waited", cpu.waited, cpu.wall);
    printf("}}\n");
    fflush(stdout);
    free(reach_ms);
    return exit_status(expected, got);
}

/* One capacity step, kept for the JSON (printed once the checks are known). */
struct step {
    int clients, lines;
    struct reach_stats stats;
    int under;
    char error[256];
    struct round_cpu cpu;
};

/* gchat.bench capacity: --senders into a room grown by --step up to --max-clients, until a step's p95 reach-all
   time passes the limit. Each step has a fresh token; each sender's first line in a step is not timed. */
static int run_capacity(void) {
    int first = opt.senders, size = 0, nsteps = 0;
    struct step *steps = calloc((size_t)(opt.max_clients / opt.step + 2), sizeof *steps);
    double *reach_ms = calloc((size_t)opt.senders * (size_t)opt.messages, sizeof(double));
    if (!steps || !reach_ms) die("out of memory");
    uint64_t expected = 0, got = 0;
    double self = 0, wall = 0;
    int failed = connect_range(0, first) < 0;
    while (!failed && size < opt.max_clients) {
        struct step *step = &steps[nsteps++];
        int from = size;
        size = size + opt.step < opt.max_clients ? size + opt.step : opt.max_clients;
        if (connect_range(first + from, first + size) < 0) {
            step->clients = from + ready_count(first + from, first + size);
            snprintf(step->error, sizeof step->error, "%.255s", errors); /* the run's error, too */
            break;
        }
        step->clients = size;
        if (trace) fprintf(stderr, "%.6f step %d connected\n", (double)now_ns() / 1e9, size);
        new_step(first, size, (uint64_t)opt.messages + 1);
        struct round_cpu start = round_start();
        step->lines = run_round(1, opt.messages, reach_ms, step->error, sizeof step->error);
        step->cpu = round_end(start);
        self += step->cpu.self, wall += step->cpu.wall;
        step_losses();
        if (!step->error[0] && !errors[0]) {
            for (int s = 0; s < opt.senders; s++) expected += sent[s] * (uint64_t)size;
            got += step_deliveries(first, size);
        }
        if (step->lines) step->stats = reach_stats(reach_ms, step->lines);
        step->under = step->lines && step->stats.p95 <= CAPACITY_LIMIT_MS && !step->error[0] && !errors[0];
        if (!step->under) break;
    }
    int best = -1, limit_reached = 0;
    double busiest = 0;
    emit_head(expected, got);
    for (int i = 0; i < nsteps; i++) {
        double busy = share(steps[i].cpu.self, steps[i].cpu.wall);
        if (busy > busiest) busiest = busy;
    }
    /* Saturated when any step's round kept the generator over 90% busy: that step's times are its own. */
    emit_generator(busiest, wall);
    printf(", \"results\": {\"limit_ms\": %g, \"steps\": [", CAPACITY_LIMIT_MS);
    for (int i = 0; i < nsteps; i++) {
        struct step *step = &steps[i];
        printf("%s{\"clients\": %d, \"lines\": %d, ", i ? ", " : "", step->clients, step->lines);
        if (step->lines)
            printf("\"p95_ms\": %.3f, \"median_ms\": %.3f, \"max_ms\": %.3f", step->stats.p95, step->stats.median,
                   step->stats.max);
        else
            printf("\"p95_ms\": null, \"median_ms\": null, \"max_ms\": null");
        printf(", \"under_limit\": %s, \"error\": ", step->under ? "true" : "false");
        if (step->error[0]) json_string(step->error);
        else printf("null");
        json_share("generator_cpu", step->cpu.self, step->cpu.wall);
        json_share("server_cpu", step->cpu.server, step->cpu.wall);
        /* A share of the round the server was ready to run but its core ran others: on a busy machine,
           what its reach times owe to other processes (--trace shows it line by line). */
        json_share("server_waited", step->cpu.waited, step->cpu.wall);
        /* Its CPU per delivery, every line of the round counted (the untimed ones too): unlike a reach
           time, hardly changed by other processes taking turns on its core. */
        double deliveries = (double)step->clients * opt.senders * (opt.messages + 1);
        printf(", \"round_s\": %.3f", step->cpu.wall);
        json_share("server_us_per_delivery", step->cpu.server * 1e6, step->lines ? deliveries : 0);
        printf("}");
        if (step->under) best = step->clients;
        else limit_reached = 1;
    }
    printf("], \"max_clients_under_limit\": ");
    if (best >= 0) printf("%d", best);
    else printf("null");
    printf(", \"limit_reached\": %s, \"cpu\": [{\"worker\": 0, \"cpu\": %.3f, \"wall_s\": %.3f}]}}\n",
           limit_reached ? "true" : "false", share(self, wall), wall);
    fflush(stdout);
    free(steps);
    free(reach_ms);
    return exit_status(expected, got);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (i == 1 && a[0] != '-') opt.mode = a; /* like gchat.bench: the mode comes first */
        else if (OPT("--proto")) opt.proto = strcmp(v, "redis") == 0 ? REDIS : strcmp(v, "irc") == 0 ? IRC : strcmp(v, "ws") == 0 ? WS : LINE;
        else if (OPT("--host")) opt.host = v;
        else if (OPT("--port")) opt.nports = parse_ints(v, opt.ports, MAX_PORTS);
        else if (OPT("--clients")) opt.clients = atoi(v);
        else if (OPT("--senders")) opt.senders = atoi(v);
        else if (OPT("--size")) opt.size = atoi(v);
        else if (OPT("--window")) opt.window = atoi(v);
        else if (OPT("--sample")) opt.sample = atoi(v);
        else if (OPT("--batch")) opt.batch = atoi(v);
        else if (OPT("--duration")) opt.duration = atof(v);
        else if (OPT("--warmup")) opt.warmup = atof(v);
        else if (OPT("--rate")) opt.rate = atof(v);
        else if (OPT("--timeout")) opt.timeout = atof(v);
        else if (OPT("--room")) opt.room = v;
        else if (strcmp(a, "--join") == 0) opt.join = 1;
        else if (strcmp(a, "--await-room") == 0) opt.await_room = 1;
        else if (strcmp(a, "--echo") == 0) echo = 1;
        else if (strcmp(a, "--trace") == 0) trace = 1;
        else if (OPT("--pid")) opt.npids = parse_ints(v, opt.pids, MAX_PIDS);
        else if (OPT("--messages")) opt.messages = atoi(v);
        else if (OPT("--step")) opt.step = atoi(v);
        else if (OPT("--max-clients")) opt.max_clients = atoi(v);
        else {
            fprintf(stderr,
                    "usage: loadgen [throughput|latency|fanout|capacity] [--proto line|redis|irc|ws] [--host H] [--port P]\n"
                    "  [--clients N] [--senders S] [--size B] [--rate LINES_PER_S] [--window W] [--sample K]\n"
                    "  [--duration S] [--warmup S] [--timeout S] [--batch N] [--room R] [--join] [--await-room] [--echo] [--pid P,..]\n"
                    "  [--messages M] [--step N] [--max-clients N] [--trace]   (fanout, capacity: as python -m gchat.bench's)\n"
                    "  --port and --pid take comma-separated lists (a cluster: clients round-robin over the ports)\n");
            return 2;
        }
    }
    int paced = strcmp(opt.mode, "latency") == 0;
    reach = strcmp(opt.mode, "fanout") == 0 || strcmp(opt.mode, "capacity") == 0;
    if (!paced && !reach && strcmp(opt.mode, "throughput") != 0)
        die("the mode (first argument): throughput, latency, fanout or capacity");
    /* gchat.bench's defaults: a fan-out room of 1,000 and its one sender; 4 capacity senders. */
    if (opt.clients < 0) opt.clients = strcmp(opt.mode, "fanout") == 0 ? 1000 : 100;
    if (strcmp(opt.mode, "fanout") == 0) opt.senders = 1;
    if (opt.senders < 0) opt.senders = strcmp(opt.mode, "capacity") == 0 ? 4 : 10;
    if (opt.senders < 1 || opt.senders > MAX_SENDERS) die("--senders: 1 to 1024");
    if (reach && opt.senders > MAX_REACH) die("--senders: at most 10 in capacity");
    if (opt.messages < 1 || opt.step < 1 || opt.max_clients < 1 || opt.clients < 1 || opt.batch < 1)
        die("--clients, --messages, --step, --max-clients, --batch: at least 1");
    if (!reach && opt.proto != REDIS && opt.senders >= opt.clients) die("--senders must be fewer than --clients");
    /* The relayed PRIVMSG must fit IRC's 512 bytes: gchat.bench's irc_max_size. */
    if (opt.proto == IRC && opt.size > 512 - (1 + 16 + 1 + 16 + 1 + 63 + 9 + 2 + 2) - (int)strlen(opt.room) + 1)
        die("--size does not fit an IRC message (at most 397 - the room's length)");
    if (opt.size < 48 || opt.size > 65536) die("--size: 48 to 65536");
    if (opt.window < 1 || opt.sample < 1 || opt.rate <= 0) die("--window, --sample, --rate: above 0");
    if (opt.proto == REDIS && strcmp(opt.room, "#lobby") == 0) opt.room = "gchat-bench";
    if (strlen(opt.room) > 64) die("--room: at most 64 bytes");

    /* A fresh token per run, so lines of any other run are foreign, never confusing the checks. */
    srand((unsigned)(now_ns() ^ getpid()));
    new_token();
    choose_needle_scan();
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) { /* a room of thousands */
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    if (opt.nports < 1) die("--port: at least one port");
    if (opt.proto != LINE && (opt.join || opt.await_room)) die("--join and --await-room are for --proto line");
    for (int i = 0; i < opt.nports; i++) {
        addrs[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.ports[i])};
        if (inet_pton(AF_INET, opt.host, &addrs[i].sin_addr) != 1) die("--host: an IPv4 address");
    }
    if (reach) {
        /* Senders are connections of their own (room members, or Redis publishers ready at a PING), then the
           receivers: the room, all of them counted towards reach-all. */
        int room = strcmp(opt.mode, "capacity") == 0 ? opt.max_clients : opt.clients;
        nconns = opt.senders + room;
        conns = calloc((size_t)nconns, sizeof *conns);
        if (!conns) die("out of memory");
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &conns[i];
            c->fd = -1;
            c->role = i < opt.senders ? PUBLISHER : RECEIVER;
            c->sender = i < opt.senders ? i : -1;
            c->index = i < opt.senders ? i : i - opt.senders;
            if (c->sender >= 0) sender_conn[i] = i;
        }
        epfd = epoll_create1(0);
        return strcmp(opt.mode, "fanout") == 0 ? run_fanout() : run_capacity();
    }

    /* Line: clients 0..senders-1 also send. Redis: publishers are extra connections. */
    nconns = opt.clients + (opt.proto == REDIS ? opt.senders : 0);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("out of memory");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->sender = -1;
        if (opt.proto != REDIS && i < opt.senders) c->role = SENDER, c->sender = i;
        else if (opt.proto == REDIS && i >= opt.clients) c->role = PUBLISHER, c->sender = i - opt.clients, c->ready = 1;
        else c->role = RECEIVER;
        c->index = i;
        if (c->sender >= 0) sender_conn[c->sender] = i;
    }
    /* Sampled receivers: spread evenly over the receivers in join order, the last one
     * (the probe) included. A server fans a line out in some order of its own; samples
     * bunched at one end would credit or charge that order, not the server. */
    int first = opt.proto == REDIS ? 0 : opt.senders, last = opt.clients - 1;
    int receivers = last - first + 1;
    int samples = opt.sample < receivers ? opt.sample : receivers;
    for (int j = 0; j < samples; j++) {
        int i = samples > 1 ? last - (int)((long)j * (receivers - 1) / (samples - 1)) : last;
        conns[i].sampled = 1;
        conns[i].next_seq = calloc((size_t)opt.senders, sizeof(uint64_t));
        if (probe < 0) probe = i;
    }
    if (probe < 0) die("no receiver is free to be the probe: more --clients than --senders");

    epfd = epoll_create1(0);
    if (connect_range(0, nconns) < 0) {
        emit(0, 0, -1, 0, 0, 0);
        return 1;
    }

    /* Warm-up, then the measured interval, then the drain. */
    int64_t t0 = now_ns();
    measure_start = t0 + (int64_t)(opt.warmup * 1e9);
    measure_end = measure_start + (int64_t)(opt.duration * 1e9);
    double cpu0 = 0, srv0 = 0, cpu1 = 0, srv1 = 0;
    int64_t wall0 = 0, wall1 = 0;
    uint64_t measured = 0;
    int64_t paced_t0 = t0;
    for (;;) {
        int64_t now = now_ns();
        if (measuring == 0 && now >= measure_start) {
            measuring = 1;
            wall0 = now, cpu0 = self_cpu_s(), srv0 = opt.npids ? server_cpu_s() : -1;
        }
        if (measuring == 1 && now >= measure_end) {
            measuring = 2;
            wall1 = now, cpu1 = self_cpu_s(), srv1 = opt.npids ? server_cpu_s() : -1;
            break;
        }
        if (paced) send_due(paced_t0, now);
        else send_window(now);
        poll_once(paced ? -2 : 10, &paced_t0);
        for (int i = 0; i < nconns; i++)
            if (conns[i].closed) {
                add_error("the server closed a connection during the run");
                goto done;
            }
    }
    for (int i = 0; i < nconns; i++) measured += conns[i].delivered_measured;
    {
        /* Drain: every line sent must reach every receiver it was meant for. */
        int64_t deadline = now_ns() + (int64_t)(opt.timeout * 1e9);
        uint64_t total = 0;
        for (int s = 0; s < opt.senders; s++) total += sent[s];
        for (;;) {
            int pending = 0;
            for (int i = 0; i < opt.clients && !pending; i++) {
                struct conn *c = &conns[i];
                uint64_t want = total - (c->role == SENDER && !echo ? sent[c->sender] : 0);
                pending = c->delivered < want || conns[i].out_len;
            }
            for (int s = 0; s < opt.senders; s++) pending |= conns[sender_conn[s]].out_len != 0;
            if (!pending) break;
            if (now_ns() > deadline) {
                /* Late is not lost: a server this far behind failed the run, it gave no wrong answer. */
                add_error("lines still undelivered --timeout after the senders stopped");
                break;
            }
            poll_once(50, NULL);
        }
    }
done:;
    uint64_t expected = 0, delivered = 0;
    for (int i = 0; i < opt.clients; i++) {
        struct conn *c = &conns[i];
        for (int s = 0; s < opt.senders; s++)
            if (!(c->role == SENDER && c->sender == s) || echo) expected += sent[s];
        delivered += c->delivered;
    }
    for (int i = 0; i < opt.clients && !errors[0]; i++) {
        struct conn *c = &conns[i];
        if (!c->sampled) continue;
        for (int s = 0; s < opt.senders; s++)
            if (c->next_seq[s] < sent[s]) losses += sent[s] - c->next_seq[s]; /* the tail never came */
    }
    double interval = wall1 > wall0 ? (double)(wall1 - wall0) / 1e9 : 0;
    emit(interval, interval > 0 ? cpu1 - cpu0 : 0, srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1, expected, delivered,
         measured);
    return errors[0] || losses || duplicates || reorders || bad_length || bad_fields || spliced || unterminated ||
                   delivered != expected
               ? 1
               : 0;
}

static void poll_once(int timeout_ms, int64_t *t0_paced) {
    static int timer = -1;
    struct epoll_event events[512];
    if (timeout_ms == -2) {
        /* Paced: sleep until the next line is due (timerfd, ns precision), or input comes. */
        if (timer < 0) {
            timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            epoll_ctl(epfd, EPOLL_CTL_ADD, timer, &ev);
        }
        int64_t at = next_due(*t0_paced);
        if (measure_end < at) at = measure_end;
        if (!measuring && measure_start < at) at = measure_start;
        struct itimerspec its = {.it_value = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000}};
        if (at <= now_ns()) its.it_value.tv_nsec += 1; /* never 0: that would disarm it */
        timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, NULL);
        timeout_ms = 1000;
    }
    int n = epoll_wait(epfd, events, 512, timeout_ms);
    int64_t now = now_ns();
    for (int i = 0; i < n; i++) {
        uint32_t id = events[i].data.u32;
        if (id == UINT32_MAX) {
            uint64_t expirations;
            if (read(timer, &expirations, sizeof expirations) < 0) { /* nothing: EAGAIN */
            }
            continue;
        }
        struct conn *c = &conns[id];
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
        if ((events[i].events & EPOLLOUT) && !c->closed) flush_out(c);
    }
}

static void latency_json(void) {
    if (!hist_count) {
        printf("{\"samples\": 0}");
        return;
    }
    printf("{\"samples\": %" PRIu64 ", \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"p99.9\": %.4f, \"max\": %.4f}",
           hist_count, hist_percentile(50) / 1e6, hist_percentile(90) / 1e6, hist_percentile(99) / 1e6,
           hist_percentile(99.9) / 1e6, (double)hist_max / 1e6);
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void json_errors(void) {
    putchar('[');
    char copy[sizeof errors];
    strcpy(copy, errors);
    int first = 1;
    for (char *item = strtok(copy, "\x1f"); item; item = strtok(NULL, "\x1f")) {
        if (!first) printf(", ");
        json_string(item);
        first = 0;
    }
    putchar(']');
}

/* The JSON object's common part, from its opening brace through "checks"; the caller prints the rest. */
static void emit_head(uint64_t expected, uint64_t delivered) {
    uint64_t malformed = bad_length + bad_fields + spliced + unterminated;
    char failures[512] = "";
    int len = 0;
    if (losses) len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"loss %" PRIu64 "\"", len ? ", " : "", losses);
    if (duplicates) len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"duplicates %" PRIu64 "\"", len ? ", " : "", duplicates);
    if (reorders) len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"reorders %" PRIu64 "\"", len ? ", " : "", reorders);
    if (malformed) len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"malformed %" PRIu64 "\"", len ? ", " : "", malformed);
    if (delivered < expected && !losses && !errors[0])
        len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"delivered %" PRIu64 " of %" PRIu64 "\"",
                        len ? ", " : "", delivered, expected);
    if (delivered > expected && !duplicates)
        len += snprintf(failures + len, sizeof failures - (size_t)len, "%s\"delivered %" PRIu64 ", more than the %" PRIu64 " sent\"",
                        len ? ", " : "", delivered, expected);
    printf("{\"tool\": \"loadgen\", \"mode\": \"%s\", \"params\": {\"proto\": \"%s\", \"clients\": %d, \"senders\": %d,"
           " \"size\": %d, \"rate\": %g, \"window\": %d, \"sample\": %d, \"duration\": %g, \"warmup\": %g,"
           " \"timeout\": %g, \"messages\": %d, \"step\": %d, \"max_clients\": %d, \"pids\": [",
           opt.mode, opt.proto == REDIS ? "redis" : opt.proto == IRC ? "irc" : opt.proto == WS ? "ws" : "line", opt.clients, opt.senders, opt.size, opt.rate, opt.window,
           opt.sample, opt.duration, opt.warmup, opt.timeout, opt.messages, opt.step, opt.max_clients);
    for (int i = 0; i < opt.npids; i++) printf("%s%d", i ? ", " : "", opt.pids[i]);
    printf("], \"ports\": [");
    for (int i = 0; i < opt.nports; i++) printf("%s%d", i ? ", " : "", opt.ports[i]);
    printf("]}, \"ok\": %s, \"errors\": ", !errors[0] && !failures[0] ? "true" : "false");
    json_errors();
    printf(", \"failures\": [%s], \"checks\": {\"expected\": %" PRIu64 ", \"delivered\": %" PRIu64
           ", \"losses\": %" PRIu64 ", \"duplicates\": %" PRIu64 ", \"reorders\": %" PRIu64 ", \"malformed\": {\"length\": %" PRIu64
           ", \"fields\": %" PRIu64 ", \"spliced\": %" PRIu64 ", \"unterminated\": %" PRIu64 "}, \"malformed_total\": %" PRIu64
           ", \"foreign\": %" PRIu64 ", \"sampled_lines\": %" PRIu64 "}",
           failures, expected, delivered, losses, duplicates, reorders, bad_length, bad_fields, spliced, unterminated,
           malformed, foreign, sampled_lines);
}

/* The generator's CPU share over `wall` seconds as gchat.bench reports it: over 90%, it may have been the limit. */
static void emit_generator(double share, double wall) {
    printf(", \"generator\": {\"cpu\": [{\"worker\": 0, \"cpu\": %.3f, \"wall_s\": %.3f}], \"saturated_workers\": [%s]}",
           share, wall, share > 0.9 ? "0" : "");
}

static void emit(double interval, double gen_cpu, double srv_cpu, uint64_t expected, uint64_t delivered,
                 uint64_t measured) {
    uint64_t sent_total = 0;
    for (int s = 0; s < opt.senders; s++) sent_total += sent[s];
    emit_head(expected, delivered);
    emit_generator(interval > 0 ? gen_cpu / interval : 0, interval);
    printf(", \"results\": {\"interval_s\": %.3f, \"lines_sent\": %" PRIu64 ", \"lines_sent_measured\": %" PRIu64
           ", \"lines_sent_per_s\": %.1f, \"lines_accepted_per_s\": %.1f, \"deliveries_measured\": %" PRIu64
           ", \"deliveries_per_s\": %.1f, \"latency_ms\": ",
           interval, sent_total, sent_measured, interval > 0 ? (double)sent_measured / interval : 0,
           interval > 0 ? (double)sent_measured / interval : 0, measured, interval > 0 ? (double)measured / interval : 0);
    latency_json();
    if (srv_cpu >= 0 && interval > 0) printf(", \"server_cpu\": %.3f", srv_cpu / interval);
    else printf(", \"server_cpu\": null");
    printf("}}\n");
    fflush(stdout);
}
