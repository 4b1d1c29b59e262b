// What one thread waking another costs on this machine (a benchmark, not a test): two threads
// pass a byte back and forth over two pipes, once after each idle gap, and the round trip (two
// wake-ups) is timed. With the threads on two CPUs, the other CPU has halted during the gap and
// is woken by an IPI; on one CPU the wake-up is a context switch. The VPC engine's round trip
// (a ping) waits for such wake-ups of each host's worker, which the kernel's routed path does not
// (README, Benchmarks, Network). Usage (compile, then: CPU of the timer thread, CPU of the echo
// thread, -1 = either; idle gap in seconds; samples):
//   cc -O2 -pthread scripts/bench/wake-rtt.c -o /tmp/wake-rtt
//   /tmp/wake-rtt 0 1 0.2 25; /tmp/wake-rtt 0 0 0.2 25; /tmp/wake-rtt 0 1 0.002 200
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int a2b[2], b2a[2];
static int cpu_b;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void* echo(void* arg) {
  (void)arg;
  pin(cpu_b);
  char c;
  while (read(a2b[0], &c, 1) == 1) {
    if (write(b2a[1], &c, 1) != 1) break;
  }
  return NULL;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: wake-rtt CPU_A CPU_B GAP_SECONDS SAMPLES\n");
    return 2;
  }
  const int cpu_a = atoi(argv[1]);
  cpu_b = atoi(argv[2]);
  const double gap = atof(argv[3]);
  const int n = atoi(argv[4]);
  if (n < 1 || gap < 0 || pipe(a2b) != 0 || pipe(b2a) != 0) {
    fprintf(stderr, "wake-rtt: bad arguments or no pipes\n");
    return 2;
  }
  pin(cpu_a);
  pthread_t t;
  double* v = malloc(n * sizeof *v);
  if (v == NULL || pthread_create(&t, NULL, echo, NULL) != 0) {
    fprintf(stderr, "wake-rtt: no memory or no thread\n");
    return 2;
  }
  char c = 'x';
  for (int i = 0; i < n; i++) {
    struct timespec g = {(time_t)gap, (long)((gap - (time_t)gap) * 1e9)};
    nanosleep(&g, NULL);
    const double s = now();
    if (write(a2b[1], &c, 1) != 1 || read(b2a[0], &c, 1) != 1) return 1;
    v[i] = (now() - s) * 1e6;
  }
  qsort(v, n, sizeof *v, cmp);
  printf("cpus %d/%d, gap %.3f s: round trip median %.1f us (p10 %.1f, p90 %.1f)\n", cpu_a, cpu_b, gap,
         v[n / 2], v[n / 10], v[n * 9 / 10]);
  return 0;
}
