// tcp-rr: the request/response and connect/request/response/close (CRR) load
// generator of `npm run bench`, in C so the client's own overhead does not
// hide the dataplane's (a node client adds ~30 µs per round trip).
//
//   tcp-rr echo PORT            server: echo every byte until EOF (RR)
//   tcp-rr once PORT            server: read 1 byte, reply, close first (CRR)
//   tcp-rr rr HOST PORT N SECS  client: N 1-byte round trips on one connection
//   tcp-rr crr HOST PORT N SECS client: up to N connections, each connect,
//                               1-byte round trip, wait for the server's FIN
// Clients stop at N or after SECS, whichever comes first, and print one JSON
// line. Servers print "LISTENING <port>" once ready and run until killed.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void die(const char *what) {
  fprintf(stderr, "tcp-rr: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int serve(int port, int close_first) {
  int one = 1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(s, 1024) < 0) die("listen");
  printf("LISTENING %d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) {
      if (write(c, buf, n) != n) break;
      if (close_first) break;
    }
    close(c);
  }
}

static int dial(const char *host, int port) {
  int one = 1;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0) die("socket");
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {.tv_sec = 2};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "tcp-rr: bad address %s\n", host);
    exit(2);
  }
  if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) {
    close(c);
    return -1;
  }
  return c;
}

static int rr(const char *host, int port, long n, double secs) {
  int c = dial(host, port);
  if (c < 0) die("connect");
  double *lat = malloc(sizeof(double) * n);
  if (!lat) die("malloc");
  double start = now_us(), deadline = start + secs * 1e6;
  long done = 0;
  char b = 'x';
  for (; done < n; done++) {
    double t0 = now_us();
    if (t0 > deadline) break;
    if (write(c, &b, 1) != 1 || read(c, &b, 1) != 1) die("round trip");
    lat[done] = now_us() - t0;
  }
  double elapsed = now_us() - start;
  close(c);
  if (done == 0) die("no round trip");
  qsort(lat, done, sizeof(double), cmp_double);
  double sum = 0;
  for (long i = 0; i < done; i++) sum += lat[i];
  printf("{\"n\":%ld,\"seconds\":%.3f,\"p50\":%.2f,\"p99\":%.2f,\"mean\":%.2f,\"min\":%.2f}\n", done, elapsed / 1e6,
         lat[done / 2], lat[(long)(done * 0.99)], sum / done, lat[0]);
  return 0;
}

static int crr(const char *host, int port, long n, double secs) {
  double start = now_us(), deadline = start + secs * 1e6;
  long ok = 0, failed = 0;
  char b = 'x';
  for (long i = 0; i < n && now_us() < deadline; i++) {
    int c = dial(host, port);
    if (c < 0) {
      failed++;
      continue;
    }
    // Success = reply byte, then the server's FIN (it closes first, so the
    // TIME_WAIT state stays on the server and client ports are not exhausted).
    if (write(c, &b, 1) == 1 && read(c, &b, 1) == 1 && read(c, &b, 1) == 0) ok++;
    else failed++;
    close(c);
  }
  double elapsed = (now_us() - start) / 1e6;
  printf("{\"ok\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"cps\":%.1f}\n", ok, failed, elapsed, ok / elapsed);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && strcmp(argv[1], "echo") == 0) return serve(atoi(argv[2]), 0);
  if (argc == 3 && strcmp(argv[1], "once") == 0) return serve(atoi(argv[2]), 1);
  if (argc == 6 && strcmp(argv[1], "rr") == 0) return rr(argv[2], atoi(argv[3]), atol(argv[4]), atof(argv[5]));
  if (argc == 6 && strcmp(argv[1], "crr") == 0) return crr(argv[2], atoi(argv[3]), atol(argv[4]), atof(argv[5]));
  fprintf(stderr, "usage: tcp-rr echo|once PORT | rr|crr HOST PORT N SECONDS\n");
  return 2;
}
