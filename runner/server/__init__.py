"""`conveyor serve`: webhooks into a durable inbox, the build queue, the JSON API, live logs and the
status pages. ``app.make_app`` assembles them; docs/server.md is the user's guide.

Modules: ``config`` (the file), ``hooks`` (webhook routes), ``inbox`` (deliveries and queued builds
in the store), ``queue`` (the worker), ``api``, ``pages``, ``views`` (read models), ``sse`` (live
logs), ``ansi`` (escape, then colour), ``auth`` (admin token, session, CSRF), ``status`` (commit
statuses), ``keys`` (what the application holds), ``schedules`` + ``scheduler`` + ``schedule_routes``
(cron schedules), ``daily_gc`` (the daily retention run).
"""

__all__: list[str] = []
