#!/bin/sh
# The sample project: prints a greeting, or checks one thing with --check.
set -e
case "$1" in
  --check)
    case "$2" in
      greeting) test "$(sh "$0")" = "hello from conveyor" ;;
      env) test "$CI" = true && test -n "$CI_JOB_NAME" && test "$CI_WORKSPACE" = "$(pwd)" ;;
      *) echo "unknown check: $2" >&2; exit 2 ;;
    esac
    echo "check $2: ok" ;;
  *) echo "${GREETING:-hello} from conveyor" ;;
esac
