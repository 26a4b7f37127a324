# shellcheck shell=bash
# Helpers shared by the benchmark scripts. Source it.

# Percent of all CPUs busy (not idle, not waiting for I/O) over the next second.
cpu_busy_percent() {
  local before after
  before=$(head -n 1 /proc/stat)
  sleep 1
  after=$(head -n 1 /proc/stat)
  awk -v a="$before" -v b="$after" 'BEGIN {
    split(a, x); split(b, y); total = 0
    for (i = 2; i <= 9; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%d", (total > 0 ? 100 * (total - idle) / total : 0) }'
}

# CPU ticks (user + system) process PID has used so far.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}
