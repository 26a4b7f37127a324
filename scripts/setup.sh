#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build, install the binaries into
# /usr/local/bin and (re)start stratad with its embedded defaults:
#   root /var/lib/strata, socket /run/strata/strata.sock, log /var/log/strata/stratad.log
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh stratad strata
install -m 0755 build/stratad build/strata /usr/local/bin/

PIDFILE=/run/strata/stratad.pid
mkdir -p /run/strata /var/log/strata
if [[ -f $PIDFILE ]] && kill -0 "$(cat $PIDFILE)" 2>/dev/null; then
  echo "setup: stopping the stratad started earlier (pid $(cat $PIDFILE))"
  kill "$(cat $PIDFILE)"
  for _ in $(seq 100); do kill -0 "$(cat $PIDFILE)" 2>/dev/null || break; sleep 0.1; done
fi
nohup /usr/local/bin/stratad >>/var/log/strata/stratad.log 2>&1 </dev/null &
echo $! >$PIDFILE
for _ in $(seq 100); do
  if /usr/local/bin/strata snapshot ls >/dev/null 2>&1; then
    echo "setup: stratad $(cat $PIDFILE) serving on /run/strata/strata.sock (log /var/log/strata/stratad.log)"
    echo "setup: try 'strata snapshot ls'"
    exit 0
  fi
  if ! kill -0 "$(cat $PIDFILE)" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "setup: stratad did not start; last log lines:" >&2
tail -n 20 /var/log/strata/stratad.log >&2
exit 1
