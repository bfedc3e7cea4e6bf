#!/usr/bin/env bash
# The Lua mock over https. Makes a CA and a certificate for 127.0.0.1 in
# BENCH_TMP (ca.crt is what the stacks trust), then runs nginx.
# env: PORT, STATUS_PORT, HTTP2 (1: HTTP/2 on), BENCH_TMP (private scratch dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v nginx >/dev/null || { echo "nginx is not installed" >&2; exit 3; }
command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 3; }
cd "$BENCH_TMP"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 2 \
  -subj "/CN=fanout bench CA" 2>/dev/null
openssl req -new "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile san.ext -out server.crt 2>/dev/null
h2=""
[ "${HTTP2:-1}" = 1 ] && h2=http2
sed -e "s|@PORT@|$PORT|g" -e "s|@STATUS_PORT@|$STATUS_PORT|g" -e "s|@HTTP2@|$h2|g" \
    -e "s|@DIR@|$BENCH_TMP|g" "$here/nginx.conf" > "$BENCH_TMP/nginx.conf"
exec nginx -e stderr -p "$BENCH_TMP" -c "$BENCH_TMP/nginx.conf" -g 'daemon off;'
