"""`conveyor serve`: the long-running server (webhooks, queue, API, status page)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

__all__ = ["register"]


@click.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Server configuration (YAML or TOML). Without it: 127.0.0.1:8080, no repositories.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the store, mirrors and workspaces live (default $CONVEYOR_DATA_DIR, else $XDG_DATA_HOME/conveyor).")
@click.option("--paused/--no-paused", default=None,
              help="Accept webhooks into the inbox but start no builds until restarted without it.")
def serve(config_file: Path | None, host: str | None, port: int | None, data_dir: Path | None,
          paused: bool | None) -> None:
    """Serve webhooks, the build queue, the JSON API and the status page."""
    from runner.errors import ConveyorError
    from runner.server.app import serve as run_server
    from runner.server.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_file, host=host, port=port, data_dir=data_dir, paused=paused)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.users:
        click.echo("warning: listening beyond localhost with no users (nor an admin token); the page is read-only",
                   err=True)
    run_server(config)


def register(group: click.Group) -> None:
    group.add_command(serve)
