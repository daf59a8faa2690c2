/*
 * cni-shim: the azure-vnet / azure-vnet-ipam binary the runtime executes.
 *
 * Why: every CNI call used to be a fresh Node.js process (~180 ms to start).
 * With "daemonSocket" in the plugin config and the node daemon listening, this
 * small program hands the call over unchanged (raw stdin bytes + CNI_* env) and
 * prints what the daemon's run of the very same plugin code (cni/skel.ts
 * runPlugin) would have printed. The daemon does all validation; the shim
 * interprets nothing but the socket path. Wire format: docs/architecture.md and
 * control/daemon/vnetcni.proto (Verb INVOKE), the one forwarding protocol (the
 * Node launcher, control/plugin/main.ts, sends the same request).
 *
 * Otherwise it execs the Node plugin (<install root>/bin/<plugin>) with the
 * same argv and env and the original stdin replayed from a memfd, so a call
 * without a daemon behaves exactly as before:
 *   - no top-level "daemonSocket" string (or JSON the scanner cannot follow),
 *   - connect() fails (ENOENT, ECONNREFUSED, EACCES, timeout, ...),
 *   - the connection breaks before the whole request was written (the daemon
 *     only runs complete frames, so it did not run this one),
 *   - the daemon answers ok=false (it did not run the call: an undecodable
 *     request, or an older daemon that does not know INVOKE),
 *   - argv[1] is "debug" (`azure-vnet debug ...`, the operator's tool: run
 *     before stdin is touched, so it works from a terminal).
 * Once the request is written, the daemon may be running it: if the daemon
 * then dies or stays silent for 120 s the shim does NOT run the call again
 * standalone; like the Node forwarding client (control/daemon/client.ts) it
 * prints CNI error 11 (try again later) and exits 1. The runtime retries;
 * ADD/DEL are idempotent and the restarted daemon reconciles.
 *
 * No dependencies; built by native/shim/Makefile (npm run build:shim).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* cni/config.ts MAX_STDIN_BYTES: larger stdin is refused with code 6. */
#define MAX_STDIN (1024 * 1024)
/* control/daemon/codec.ts MAX_FRAME: the daemon refuses larger frames. */
#define MAX_FRAME (4 * 1024 * 1024)
/* control/daemon/client.ts: connect timeout and answer timeout. */
#define CONNECT_TIMEOUT_MS 250
#define ANSWER_TIMEOUT_MS 120000
#define CLIENT_VERSION "0.1.0-shim"

/* vnetcni.proto numbers, named <MESSAGE>_<FIELD> so test/unit/daemon-codec.test.ts
 * can check each against the .proto. Only what the shim writes or reads. */
#define VERB_INVOKE 9
#define REQUEST_CLIENT_VERSION 1
#define REQUEST_VERB 2
#define REQUEST_STDIN 10
#define REQUEST_ENV 11
#define REQUEST_PLUGIN 12
#define MAP_KEY 1
#define MAP_VALUE 2
#define RESPONSE_OK 1
#define RESPONSE_ERROR 3
#define RESPONSE_STDOUT 4
#define RESPONSE_EXIT_CODE 5
#define ERROR_MESSAGE 3

#ifndef VNET_NODE_PATH
#define VNET_NODE_PATH ""
#endif

static const char *plugin = "azure-vnet";
/* Top-level "cniVersion" if it looks like x.y.z (cni/version.ts errorVersion), for the shim's own errors. */
static char error_version[32] = "1.1.0";

/* ---------- output ---------- */

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Prints one CNI error document on stdout (the same shape as cni/output.ts errorDocument) and exits 1. */
static void __attribute__((noreturn)) cni_error(int code, const char *msg) {
  char out[4096];
  size_t o = (size_t)snprintf(out, sizeof out, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"", error_version, code);
  for (const unsigned char *m = (const unsigned char *)msg; *m && o < sizeof out - 16; m++) {
    if (*m == '"' || *m == '\\') {
      out[o++] = '\\';
      out[o++] = (char)*m;
    } else if (*m < 0x20) {
      o += (size_t)snprintf(out + o, sizeof out - o, "\\u%04x", *m);
    } else {
      out[o++] = (char)*m;
    }
  }
  o += (size_t)snprintf(out + o, sizeof out - o, "\"}\n");
  write_all(1, out, o);
  exit(1);
}

/* ---------- stdin ---------- */

/* Reads at most MAX_STDIN + 1 bytes: one more than allowed is enough to know it is too big. */
static unsigned char *read_stdin(size_t *len) {
  size_t cap = 16384, n = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) cni_error(999, "out of memory reading stdin");
  for (;;) {
    if (n == cap) {
      cap *= 2;
      if (cap > MAX_STDIN + 1) cap = MAX_STDIN + 1;
      unsigned char *nb = realloc(buf, cap);
      if (!nb) cni_error(999, "out of memory reading stdin");
      buf = nb;
    }
    ssize_t r = read(0, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADF) break; /* no stdin at all: same as empty */
      cni_error(5, "cannot read the network configuration from stdin");
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n > MAX_STDIN) break;
  }
  *len = n;
  return buf;
}

/* ---------- the top-level key scanner ----------
 * Strict JSON (RFC 8259, what JSON.parse accepts). It finds the value of the
 * top-level keys "daemonSocket" and "cniVersion" without building anything.
 * Duplicate keys: the last one wins, as in JSON.parse. Anything unexpected
 * (bad syntax, a socket path that is not printable ASCII or longer than
 * sun_path) makes the scan fail, and a failed scan means "no socket":
 * the Node plugin then runs and reports what is wrong.
 */
struct scan {
  const unsigned char *p, *end;
};

static void skip_ws(struct scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  *out = v;
  return 0;
}

/*
 * Parses a string at s->p (which is at the opening quote). If out is given,
 * the decoded text is stored there (NUL-terminated, at most cap-1 bytes; longer
 * sets *ascii = 0). *ascii stays 1 only if the decoded text is plain printable
 * ASCII without NUL, i.e. the same bytes Node would use. Returns 0 or -1.
 */
static int scan_string(struct scan *s, char *out, size_t cap, int *ascii) {
  size_t o = 0;
  if (ascii) *ascii = 1;
  s->p++; /* opening quote */
  while (s->p < s->end) {
    unsigned c = *s->p++;
    unsigned cp;
    if (c == '"') {
      if (out) out[o < cap ? o : cap - 1] = 0;
      return 0;
    }
    if (c < 0x20) return -1; /* raw control characters are not allowed in JSON strings */
    if (c != '\\') {
      cp = c; /* a raw byte >= 0x80 is part of UTF-8 text: never ASCII */
    } else {
      if (s->p >= s->end) return -1;
      c = *s->p++;
      switch (c) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          if (s->end - s->p < 4 || hex4(s->p, &cp) < 0) return -1;
          s->p += 4;
          break;
        default: return -1;
      }
    }
    /* Only printable ASCII can be compared and used as a path byte for byte. */
    if (cp < 0x20 || cp > 0x7e) {
      if (ascii) *ascii = 0;
      continue;
    }
    if (out) {
      if (o + 1 < cap) out[o++] = (char)cp;
      else if (ascii) *ascii = 0; /* too long */
    }
  }
  return -1; /* unterminated */
}

static int scan_number(struct scan *s) {
  const unsigned char *p = s->p, *e = s->end;
#define DIGIT(x) ((x) >= '0' && (x) <= '9')
  if (p < e && *p == '-') p++;
  if (p >= e) return -1;
  if (*p == '0') p++;
  else if (DIGIT(*p)) while (p < e && DIGIT(*p)) p++;
  else return -1;
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !DIGIT(*p)) return -1;
    while (p < e && DIGIT(*p)) p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || !DIGIT(*p)) return -1;
    while (p < e && DIGIT(*p)) p++;
  }
#undef DIGIT
  s->p = p;
  return 0;
}

static int scan_literal(struct scan *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
  s->p += n;
  return 0;
}

/* After an object's '{' or ',': a key and its colon. */
static int scan_key(struct scan *s) {
  skip_ws(s);
  if (s->p >= s->end || *s->p != '"' || scan_string(s, NULL, 0, NULL) < 0) return -1;
  skip_ws(s);
  if (s->p >= s->end || *s->p != ':') return -1;
  s->p++;
  return 0;
}

/*
 * Skips one value of any depth. Open containers are kept on a heap stack of
 * their closing bytes, not in C recursion: JSON.parse accepts very deep
 * nesting, and so must the shim (1 MiB of '[' is only 1 MiB of stack here).
 */
static int scan_value(struct scan *s) {
  unsigned char *open = NULL; /* closing byte of each open container */
  size_t depth = 0, cap = 0;
  int rc = -1;
  for (;;) {
    /* A value starts here. */
    skip_ws(s);
    if (s->p >= s->end) goto out;
    unsigned char c = *s->p;
    if (c == '{' || c == '[') {
      if (depth == cap) {
        cap = cap ? cap * 2 : 64;
        unsigned char *n = realloc(open, cap);
        if (!n) goto out;
        open = n;
      }
      open[depth++] = c == '{' ? '}' : ']';
      s->p++;
      skip_ws(s);
      if (s->p < s->end && *s->p == open[depth - 1]) {
        s->p++;
        depth--;
      } else {
        if (c == '{' && scan_key(s) < 0) goto out;
        continue; /* the first member's value */
      }
    } else if (c == '"') {
      if (scan_string(s, NULL, 0, NULL) < 0) goto out;
    } else if (c == 't' || c == 'f' || c == 'n') {
      if (scan_literal(s, c == 't' ? "true" : c == 'f' ? "false" : "null") < 0) goto out;
    } else if (scan_number(s) < 0) {
      goto out;
    }
    /* A value ended: close containers until one continues with ','. */
    for (;;) {
      if (depth == 0) {
        rc = 0;
        goto out;
      }
      skip_ws(s);
      if (s->p >= s->end) goto out;
      if (*s->p == ',') {
        s->p++;
        if (open[depth - 1] == '}' && scan_key(s) < 0) goto out;
        break; /* the next member's value */
      }
      if (*s->p != open[depth - 1]) goto out;
      s->p++;
      depth--;
    }
  }
out:
  free(open);
  return rc;
}

/*
 * Sets sock (capacity cap) to the top-level "daemonSocket" if the whole input
 * is one valid JSON object and the last such key has a non-empty printable
 * ASCII string value. Returns 1 if found, 0 if not.
 */
static int find_daemon_socket(const unsigned char *buf, size_t len, char *sock, size_t cap) {
  struct scan s = {buf, buf + len};
  int found = 0;
  char version[sizeof error_version] = "";
  skip_ws(&s);
  if (s.p >= s.end || *s.p != '{') return 0;
  s.p++;
  skip_ws(&s);
  if (s.p < s.end && *s.p == '}') {
    s.p++;
  } else {
    for (;;) {
      char key[16];
      int key_ascii;
      skip_ws(&s);
      if (s.p >= s.end || *s.p != '"' || scan_string(&s, key, sizeof key, &key_ascii) < 0) return 0;
      skip_ws(&s);
      if (s.p >= s.end || *s.p != ':') return 0;
      s.p++;
      skip_ws(&s);
      int is_socket = key_ascii && strcmp(key, "daemonSocket") == 0;
      int is_version = key_ascii && strcmp(key, "cniVersion") == 0;
      if ((is_socket || is_version) && s.p < s.end && *s.p == '"') {
        char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
        int ascii;
        if (scan_string(&s, tmp, sizeof tmp, &ascii) < 0) return 0;
        if (is_socket) {
          found = ascii && tmp[0] != 0;
          if (found) snprintf(sock, cap, "%s", tmp);
        } else {
          size_t vl = strlen(tmp);
          version[0] = 0;
          if (ascii && vl < sizeof version) memcpy(version, tmp, vl + 1);
        }
      } else {
        if (is_socket) found = 0; /* a later non-string value overrides an earlier string */
        if (is_version) version[0] = 0;
        if (scan_value(&s) < 0) return 0;
      }
      skip_ws(&s);
      if (s.p >= s.end) return 0;
      if (*s.p == ',') {
        s.p++;
        continue;
      }
      if (*s.p == '}') {
        s.p++;
        break;
      }
      return 0;
    }
  }
  skip_ws(&s);
  if (s.p != s.end) return 0; /* trailing garbage: JSON.parse would refuse it */
  /* x.y.z only, like cni/version.ts VERSION_SYNTAX */
  unsigned a, b, c;
  char rest;
  if (version[0] && sscanf(version, "%u.%u.%u%c", &a, &b, &c, &rest) == 3 && strspn(version, "0123456789.") == strlen(version))
    snprintf(error_version, sizeof error_version, "%s", version);
  return found;
}

/* ---------- the Node fallback ---------- */

/* Runs the Node plugin with this argv and env. in == NULL: stdin was never read, pass it on as it is. */
static void __attribute__((noreturn)) exec_node(const unsigned char *in, size_t len, int argc, char **argv) {
  if (in) {
    /* Replay stdin: a memfd holding exactly the bytes read, made fd 0. */
    int fd = memfd_create("cni-stdin", 0);
    if (fd < 0 || write_all(fd, in, len) < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0)
      cni_error(999, "cannot replay stdin to the Node plugin (memfd)");
    if (fd != 0) close(fd);
  }

  /* The install root: this binary is <root>/dist/shim/cni-shim. */
  char self[PATH_MAX], launcher[PATH_MAX + 64];
  if (!realpath("/proc/self/exe", self)) cni_error(999, "cannot resolve /proc/self/exe");
  char *root = dirname(dirname(dirname(self)));
  snprintf(launcher, sizeof launcher, "%s/bin/%s", root, plugin);

  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) cni_error(999, "out of memory");
  args[0] = "node";
  args[1] = launcher;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  signal(SIGPIPE, SIG_DFL);
  if (VNET_NODE_PATH[0]) execv(VNET_NODE_PATH, args);
  execvp("node", args);
  char msg[PATH_MAX + 128];
  snprintf(msg, sizeof msg, "%s: cannot run the Node plugin %s: %s", plugin, launcher, strerror(errno));
  cni_error(999, msg);
}

/* ---------- protobuf, by hand ----------
 * The shim writes one vnetcni.v1.Request (INVOKE: client_version, verb, stdin,
 * env as map entries of key + value, plugin) and reads one Response (ok,
 * error's message for the log line, stdout, exit_code); other fields are skipped.
 * A tag is (field << 3) | wire type; wire type 0 = varint, 2 = length-delimited.
 */
struct buf {
  unsigned char *p;
  size_t n, cap;
};

static void put(struct buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n) cap *= 2;
    unsigned char *np = realloc(b->p, cap);
    if (!np) cni_error(999, "out of memory");
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}

static void put_varint(struct buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  while (v > 0x7f) {
    tmp[n++] = (unsigned char)((v & 0x7f) | 0x80);
    v >>= 7;
  }
  tmp[n++] = (unsigned char)v;
  put(b, tmp, n);
}

static void put_tag(struct buf *b, unsigned field, unsigned wire_type) { put_varint(b, (field << 3) | wire_type); }

static void put_bytes(struct buf *b, unsigned field, const void *data, size_t n) {
  put_tag(b, field, 2);
  put_varint(b, n);
  put(b, data, n);
}

/* Only the call's CNI_* variables cross the socket. */
static void put_env(struct buf *req, char **envp) {
  for (char **e = envp; *e; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    struct buf entry = {0};
    put_bytes(&entry, MAP_KEY, *e, (size_t)(eq - *e));
    put_bytes(&entry, MAP_VALUE, eq + 1, strlen(eq + 1));
    put_bytes(req, REQUEST_ENV, entry.p, entry.n);
    free(entry.p);
  }
}

static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    unsigned char c = *(*p)++;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (c < 0x80) return 0;
  }
  return -1;
}

struct response {
  int ok;
  const unsigned char *out;
  size_t out_len;
  uint64_t exit_code;
  char err_msg[1024];
};

/* Reads one field of a protobuf message: its number and wire type, a varint's
 * value in *v, a length-delimited field's bytes at *data (length *v); fixed
 * 64/32-bit fields are skipped. Returns -1 on malformed input. */
static int next_field(const unsigned char **p, const unsigned char *end, unsigned *field, unsigned *wt, uint64_t *v,
                      const unsigned char **data) {
  uint64_t key;
  if (get_varint(p, end, &key) < 0) return -1;
  *wt = (unsigned)(key & 7);
  *field = (unsigned)(key >> 3);
  if (*wt == 0) return get_varint(p, end, v);
  if (*wt == 2) {
    if (get_varint(p, end, v) < 0 || *v > (uint64_t)(end - *p)) return -1;
    *data = *p;
    *p += *v;
    return 0;
  }
  if (*wt == 1 || *wt == 5) {
    size_t n = *wt == 1 ? 8 : 4;
    if ((size_t)(end - *p) < n) return -1;
    *p += n;
    return 0;
  }
  return -1;
}

/* Error: only the message is read (the shim prints it when the daemon refuses a call). */
static int decode_error(const unsigned char *p, const unsigned char *end, struct response *r) {
  while (p < end) {
    unsigned field, wt;
    uint64_t v = 0;
    const unsigned char *data = NULL;
    if (next_field(&p, end, &field, &wt, &v, &data) < 0) return -1;
    if (wt == 2 && field == ERROR_MESSAGE) snprintf(r->err_msg, sizeof r->err_msg, "%.*s", (int)v, (const char *)data);
  }
  return 0;
}

/* Response { bool ok = 1; ...; Error error = 3; bytes stdout = 4; uint32 exit_code = 5; } */
static int decode_response(const unsigned char *p, const unsigned char *end, struct response *r) {
  while (p < end) {
    unsigned field, wt;
    uint64_t v = 0;
    const unsigned char *data = NULL;
    if (next_field(&p, end, &field, &wt, &v, &data) < 0) return -1;
    if (wt == 0 && field == RESPONSE_OK) r->ok = v != 0;
    if (wt == 0 && field == RESPONSE_EXIT_CODE) r->exit_code = v;
    if (wt == 2 && field == RESPONSE_ERROR && decode_error(data, data + v, r) < 0) return -1;
    if (wt == 2 && field == RESPONSE_STDOUT) {
      r->out = data;
      r->out_len = (size_t)v;
    }
  }
  return 0;
}

/* ---------- the socket ---------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connected socket, or -1 (any failure means: run standalone). */
static int connect_daemon(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  /* A unix connect() waits for backlog room up to the send timeout. */
  struct timeval tv = {.tv_sec = 0, .tv_usec = CONNECT_TIMEOUT_MS * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* Waits for fd to be ready; 0 ready, -1 timed out. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return -1;
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc = poll(&pfd, 1, (int)(left > INT_MAX ? INT_MAX : left));
    if (rc > 0) return 0;
    if (rc < 0 && errno != EINTR) return -1;
  }
}

static void __attribute__((noreturn)) try_again(const char *msg) { cni_error(11, msg); }

int main(int argc, char **argv, char **envp) {
  const char *base = strrchr(argv[0] ? argv[0] : "", '/');
  base = base ? base + 1 : (argv[0] ? argv[0] : "");
  if (strcmp(base, "azure-vnet-ipam") == 0) plugin = "azure-vnet-ipam";
  /* A runtime never passes arguments; `azure-vnet debug ...` is a person at a
   * terminal, and stdin may never end: hand over before reading it. */
  if (argc > 1 && strcmp(argv[1], "debug") == 0) exec_node(NULL, 0, argc, argv);

  size_t len;
  unsigned char *in = read_stdin(&len);
  const char *command = getenv("CNI_COMMAND");
  if (len > MAX_STDIN && command &&
      (!strcmp(command, "ADD") || !strcmp(command, "DEL") || !strcmp(command, "CHECK") || !strcmp(command, "GC") || !strcmp(command, "STATUS"))) {
    /* What cni/config.ts decodeStdin says for a valid command (VERSION still answers; Node handles that). */
    char msg[128];
    snprintf(msg, sizeof msg, "network configuration on stdin is larger than %d bytes", MAX_STDIN);
    cni_error(6, msg);
  }

  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  if (!find_daemon_socket(in, len, sock_path, sizeof sock_path)) exec_node(in, len, argc, argv);
  int fd = connect_daemon(sock_path);
  if (fd < 0) exec_node(in, len, argc, argv);
  signal(SIGPIPE, SIG_IGN); /* a closed socket or stdout is an error return, not a kill */

  struct buf body = {0};
  put_bytes(&body, REQUEST_CLIENT_VERSION, CLIENT_VERSION, strlen(CLIENT_VERSION));
  put_tag(&body, REQUEST_VERB, 0);
  put_varint(&body, VERB_INVOKE);
  put_bytes(&body, REQUEST_STDIN, in, len);
  put_env(&body, envp);
  put_bytes(&body, REQUEST_PLUGIN, plugin, strlen(plugin));
  if (body.n > MAX_FRAME) { /* a huge environment: the daemon would refuse it */
    close(fd);
    exec_node(in, len, argc, argv);
  }
  struct buf req = {0};
  unsigned char head[4] = {(unsigned char)(body.n >> 24), (unsigned char)(body.n >> 16), (unsigned char)(body.n >> 8), (unsigned char)body.n};
  put(&req, head, 4);
  put(&req, body.p, body.n);
  free(body.p);

  long long deadline = now_ms() + ANSWER_TIMEOUT_MS;
  char msg[256];
  /* Send. A break here means the daemon has not got the whole frame, so it cannot have run it. */
  for (size_t off = 0; off < req.n;) {
    ssize_t w = send(fd, req.p + off, req.n - off, MSG_NOSIGNAL);
    if (w >= 0) {
      off += (size_t)w;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (wait_fd(fd, POLLOUT, deadline) < 0) try_again("the node daemon did not answer within 120000 ms");
      continue;
    }
    close(fd);
    exec_node(in, len, argc, argv);
  }
  free(req.p);

  /* Receive one frame: 4-byte length, then the Response. */
  unsigned char *ans = NULL;
  size_t have = 0, want = 4;
  unsigned char hdr[4];
  while (have < want) {
    unsigned char *dst = ans ? ans + (have - 4) : hdr + have;
    size_t room = ans ? want - have : 4 - have;
    ssize_t r = recv(fd, dst, room, 0);
    if (r > 0) {
      have += (size_t)r;
      if (!ans && have == 4) {
        uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
        if (n > MAX_FRAME) {
          snprintf(msg, sizeof msg, "frame of %u bytes exceeds the %d byte limit", n, MAX_FRAME);
          cni_error(999, msg);
        }
        ans = malloc(n ? n : 1);
        if (!ans) cni_error(999, "out of memory");
        want = 4 + (size_t)n;
      }
      continue;
    }
    if (r == 0) try_again("the node daemon closed the connection before answering");
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (wait_fd(fd, POLLIN, deadline) < 0) try_again("the node daemon did not answer within 120000 ms");
      continue;
    }
    snprintf(msg, sizeof msg, "node daemon connection failed: %s", strerror(errno));
    try_again(msg);
  }
  close(fd);

  struct response res = {0};
  if (decode_response(ans, ans + (want - 4), &res) < 0) cni_error(999, "the node daemon's answer is not a valid vnetcni.v1.Response");
  if (!res.ok) {
    /* The daemon did not run the call (it could not decode it, or predates INVOKE): run it here. */
    fprintf(stderr, "%s: the node daemon refused the call (%s); running standalone\n", plugin, res.err_msg);
    exec_node(in, len, argc, argv);
  }
  if (write_all(1, res.out, res.out_len) < 0) return 1;
  return res.exit_code > 255 ? 1 : (int)res.exit_code;
}
