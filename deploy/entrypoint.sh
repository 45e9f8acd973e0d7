#!/bin/sh
# The image's entry point: Docker's `*_FILE` convention for the admin token, then `conveyor "$@"`.
# A Swarm secret is a file (/run/secrets/NAME); Conveyor reads the token from CONVEYOR_ADMIN_TOKEN.
set -eu
if [ -n "${CONVEYOR_ADMIN_TOKEN_FILE:-}" ]; then
    if [ ! -r "$CONVEYOR_ADMIN_TOKEN_FILE" ]; then
        echo "conveyor: CONVEYOR_ADMIN_TOKEN_FILE=$CONVEYOR_ADMIN_TOKEN_FILE cannot be read; check the secret's name" >&2
        exit 2
    fi
    CONVEYOR_ADMIN_TOKEN="$(cat "$CONVEYOR_ADMIN_TOKEN_FILE")"
    export CONVEYOR_ADMIN_TOKEN
    unset CONVEYOR_ADMIN_TOKEN_FILE
fi
exec conveyor "$@"
