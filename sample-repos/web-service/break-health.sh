#!/bin/sh
# Makes the second commit of the sample: version 2 whose /health is gone, so its health check fails.
set -e
cd "$(dirname "$0")"
echo "web-service v2" > www/index.html
echo "2" > www/version
rm -f www/health
git add -A www
git -c user.name=Sample -c user.email=sample@example.invalid commit -q -m "v2: drop /health (breaks the health check)"
