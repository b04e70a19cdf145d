#!/bin/bash
# Health check without curl (the images carry none): GET http://127.0.0.1:$1$2
# and succeed on a 200. Used by compose's healthcheck.
exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "${2:-/health}" >&3
read -r -t 5 _ status _ <&3 && [ "$status" = 200 ]
