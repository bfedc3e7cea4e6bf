#!/usr/bin/env bash
# The project's own peer, built by the project's build into build/bench/.
# env: PORT, UPSTREAM, WORKERS, REPO
bin="${FANOUT_PEER:-$REPO/build/bench/fanout-peer}"
[ -x "$bin" ] || { echo "fanout-peer not built: $bin is missing" >&2; exit 3; }
# No access log: the other stacks write none either. Nothing to size: the
# plain-http transport keeps up to 16,384 idle connections per origin for
# 30 s by default (--max-idle-connections-per-host), above S3's 10,000 calls
# in flight; curl's (https) keeps 1,024 connections in its cache.
# CA_FILE (https variants of S2): the CA the upstream's certificate is from.
# FANOUT_ARGS (S6's hedged variants): more options, split at spaces.
exec "$bin" --port "$PORT" --upstream "$UPSTREAM" --workers "${WORKERS:-1}" --access-log off \
  ${CA_FILE:+--ca-file "$CA_FILE"} ${FANOUT_ARGS:-}
