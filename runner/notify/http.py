"""The HTTP POST that webhook-like notifiers share (a fourth one, Teams or Discord, uses it too)."""

from __future__ import annotations

from runner.notify.options import Options

__all__ = ["post", "check_url"]


def check_url(options: Options, key: str, value: str | None) -> str:
    if not value or not value.startswith(("http://", "https://")):
        raise options.error(f"{key} must be an http:// or https:// URL")
    return value


async def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str:
    """POST ``body`` and return the answer's text; raise when the answer is not a 2xx (the caller
    logs and retries). The URL's query is left out of errors: a token may sit in it."""
    import aiohttp  # here: loading the notifier plugins (every `conveyor run` does) must not import it

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            text = await response.text(errors="replace")
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{url.split('?')[0]} answered {response.status}: {text[:200]}")
            return text

