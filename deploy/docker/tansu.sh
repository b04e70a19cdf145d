#!/bin/bash
# The local stand-in broker (tansu.Dockerfile): Tansu with SQLite storage,
# and the index its fetch needs on the record-header table (see
# crates/tansu: without it every fetched record scans the whole table and
# a third round of the batch flow stalls the broker). Tansu gives up on a
# store another process holds locked, so the index is made while nothing
# else uses it: before Tansu starts when the store exists (a restart), else
# once Tansu has made its tables and listens, before the health check
# (which waits for .indexed) lets any client in.
set -euo pipefail
cd /var/lib/tansu
index() {
  sqlite3 -cmd '.timeout 30000' tansu.db \
    'create index if not exists aies_header_record on header (topition, offset_id)'
  touch .indexed
  echo "tansu: header table indexed"
}
rm -f .indexed
if [ -f tansu.db ] && sqlite3 tansu.db "select count(*) from sqlite_master where name = 'header'" | grep -qx 1; then
  index
fi
advertised=${TANSU_ADVERTISED_URL:-tcp://kafka:9092}
tansu broker --listener-url tcp://0.0.0.0:9092 --advertised-listener-url "$advertised" \
  --storage-engine sqlite://tansu.db &
pid=$!
trap 'kill -TERM $pid' TERM INT
if [ ! -f .indexed ]; then
  # Tansu makes its tables before it listens.
  until (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; do
    kill -0 $pid || exit 1
    sleep 0.2
  done
  index
fi
wait $pid
