"""Typed keys of what the application holds (aiohttp ``AppKey``s), one place for all of them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["CONFIG", "AUTH", "HUB", "TEMPLATES", "BACKGROUND", "STORE", "BACKEND", "QUEUE", "REPORTER",
           "OWN_STORE", "START_QUEUE", "CLOCK", "SCHEDULER", "DAILY_GC",
           "NOTIFICATIONS"]

CONFIG = web.AppKey("config", Any)
AUTH = web.AppKey("auth", Any)
HUB = web.AppKey("hub", Any)
TEMPLATES = web.AppKey("templates", Any)
BACKGROUND = web.AppKey("background", set)
STORE = web.AppKey("store", Any)
BACKEND = web.AppKey("backend", Any)
QUEUE = web.AppKey("queue", Any)
REPORTER = web.AppKey("reporter", Any)
OWN_STORE = web.AppKey("own_store", bool)
START_QUEUE = web.AppKey("start_queue", bool)
CLOCK = web.AppKey("clock", Any)
SCHEDULER = web.AppKey("scheduler", Any)
DAILY_GC = web.AppKey("daily_gc", Any)
NOTIFICATIONS = web.AppKey("notifications", Any)
