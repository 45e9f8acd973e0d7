# Conveyor itself, as an image: `conveyor serve` on port 8080, data in /var/lib/conveyor.
#
#   pip wheel --no-deps -w dist .        # the wheel of this checkout (web/, pipelines/lib, plugins/ inside)
#   docker build -t conveyor:0.1.0 .
#
# Offline (no package index reachable from the build): put every dependency's wheel into dist/ too
# (`pip download -d dist conveyor-*.whl`) and add `--build-arg PIP_NO_INDEX=1`.
# BASE must be a Debian-like image with python3 >= 3.11 and its venv module (python:3.11-slim has both).
# See docs/server.md, "Running Conveyor as a Swarm service", for what the engine socket mount means.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG PIP_NO_INDEX
# git: the server mirrors repositories with it (GitPython drives the git binary).
RUN if ! command -v git >/dev/null; then \
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            git ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*; \
    fi
COPY dist/ /tmp/dist/
COPY deploy/entrypoint.sh /usr/local/bin/conveyor-entrypoint
RUN python3 -m venv /opt/conveyor \
 && /opt/conveyor/bin/pip install --no-cache-dir --disable-pip-version-check --find-links /tmp/dist conveyor \
 && rm -rf /tmp/dist \
 && chmod 0755 /usr/local/bin/conveyor-entrypoint
ENV PATH=/opt/conveyor/bin:$PATH \
    CONVEYOR_DATA_DIR=/var/lib/conveyor \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/conveyor
EXPOSE 8080
ENTRYPOINT ["conveyor-entrypoint"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
