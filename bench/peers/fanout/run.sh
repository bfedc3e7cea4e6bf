#!/usr/bin/env bash
# The project's own peer, built by the project's build into build/bench/.
# env: PORT, UPSTREAM, WORKERS, REPO
bin="${FANOUT_PEER:-$REPO/build/bench/fanout-peer}"
[ -x "$bin" ] || { echo "fanout-peer not built: $bin is missing" >&2; exit 3; }
# No access log: the other stacks write none either.
exec "$bin" --port "$PORT" --upstream "$UPSTREAM" --workers "${WORKERS:-1}" --access-log off
